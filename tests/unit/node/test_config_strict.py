"""cluster.yml is decoded strictly: a wrong type, a bad value or an unknown key anywhere is a
ConfigError naming its path, every problem at once (node/config.py over node/decode.py)."""

from __future__ import annotations

import pytest
import yaml

from node.config import Config, ConfigError, MiB, effective_yaml

NODE = {"id": "n1", "host": "127.0.0.1", "http_port": 8001, "gossip_port": 7001}


def problems(**raw) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"nodes": [NODE], **raw})
    return e.value.problems


@pytest.mark.parametrize("raw, expected", [
    # the cases
    ({"nodes": [{**NODE, "http_port": "8001"}]}, 'nodes[0].http_port: expected a whole number, got "8001"'),
    ({"membership": {"probe_interval": "fast"}}, 'membership.probe_interval: expected a number, got "fast"'),
    ({"cache": {"fast_lane": "no"}}, 'cache.fast_lane: expected true or false, got "no"'),
    ({"storag": {"bucket": "x"}}, "top level: unknown key 'storag'"),
    ({"timing": {"probe_interval": 1.0}}, "timing.probe_interval: moved to the membership: section"),
    # nested: a node entry, a ladder entry, media, cors, and the others
    ({"nodes": [{**NODE, "weight": 0}]}, "nodes[0].weight: expected a whole number >= 1, got 0"),
    ({"nodes": [{**NODE, "gossip_port": 70000}]}, "nodes[0].gossip_port: expected a whole number <= 65535, got 70000"),
    ({"nodes": [{**NODE, "id": "n 1"}]}, "nodes[0].id: 'n 1': use 1-64 letters"),
    ({"nodes": [{**NODE, "hots": "x"}]}, "nodes[0]: unknown key 'hots'"),
    ({"nodes": [{"id": "n1", "host": "h", "http_port": 1}]}, "nodes[0].gossip_port: required"),
    ({"nodes": []}, "nodes: cluster.yml names no nodes"),
    ({"nodes": [NODE, NODE]}, "nodes: duplicate node ids"),
    ({"seeds": ["n1", "n9"]}, "seeds[1]: 'n9' is not a node"),
    ({"ladder": [{"name": "a", "height": 240, "video_kbps": "fast"}]}, 'ladder[0].video_kbps: expected a whole number, got "fast"'),
    ({"ladder": [{"name": "a", "height": 240, "video_kbps": 400, "fps": 30}]}, "ladder[0]: unknown key 'fps'"),
    ({"ladder": [{"name": "a b", "height": 240, "video_kbps": 400}]}, "ladder[0].name: expected a string matching"),
    ({"ladder": []}, "ladder: at least one rendition"),
    ({"media": {"max_fps": "many"}}, 'media.max_fps: expected a number, got "many"'),
    ({"media": {"max_width": 0}}, "media.max_width: must be a positive number, got 0"),
    ({"media": {"probe_memory": "lots"}}, "media.probe_memory: not a size: 'lots'"),
    ({"cors": {"origins": ["https://a.example", "*"]}}, "cors.origins[1]: '*' stands alone"),
    ({"cors": {"origins": [1]}}, "cors.origins[0]: expected a string, got 1"),
    ({"storage": {"part_size": "1 MiB"}}, "storage.part_size: must be at least 5 MiB"),
    ({"storage": {"endpoint": "s3.example"}}, "storage.endpoint: 's3.example': `embedded` or an http(s)://host:port URL"),
    ({"storage": {"sign_payload": "yes"}}, 'storage.sign_payload: expected true or false or null, got "yes"'),
    ({"processing": {"preset": "quick"}}, 'processing.preset: expected one of "ultrafast"'),
    ({"membership": {"probe_timeout": 2.0}}, "membership.probe_timeout: must be shorter than probe_interval"),
    ({"log_level": "loud"}, 'log_level: expected one of "debug", "info", "warning", "error", got "loud"'),
    ({"profile": "fast"}, 'profile: expected one of "default", "local", got "fast"'),
    ({"auth": {"token_env": "MY TOKEN"}}, "auth.token_env: expected a string matching"),
    ({"limits": ["a"]}, 'limits: expected a mapping, got ["a"]'),
    ({"cache": {1: True}}, "cache: keys are names, not 1"),
    ({"media": {"max_frames": 0}}, "media.max_frames: must be positive (or null), got 0"),
    ({"storage": {"bucket": "ab"}}, 'storage.bucket: expected a string of length >= 3, got "ab"'),
])
def test_a_bad_setting_names_its_path(raw, expected):
    found = problems(**raw)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_not_only_the_first():
    found = problems(nodes=[{**NODE, "http_port": "8001"}, {**NODE, "id": "n2", "weight": 500}],
                     storag={}, cache={"fast_lane": "no", "max_bytes": "huge"},
                     membership={"probe_interval": "fast"}, media={"formats": "mov,file:/x"})
    assert [p.split(":")[0] for p in found] == [
        "top level", "nodes[0].http_port", "nodes[1].weight", "membership.probe_interval",
        "cache.max_bytes", "cache.fast_lane", "media.formats"]


def test_an_unknown_key_suggests_the_near_one():
    (found,) = problems(storag={})
    assert "did you mean 'storage'?" in found and "known: nodes, cluster" in found


def test_yaml_booleans_and_numbers_pass_where_the_type_allows():
    doc = yaml.safe_load("""
nodes: [{id: n1, host: 127.0.0.1, http_port: 8001, gossip_port: 7001}]
cache: {fast_lane: no, max_bytes: 64 MiB}
timing: {lease_seconds: 20}      # an integer is a number of seconds
storage:                          # a key with no value keeps its default
""")
    cfg = Config.from_dict(doc)
    assert cfg.cache.fast_lane is False and cfg.cache.max_bytes == 64 * MiB
    assert cfg.timing.lease_seconds == 20.0 and cfg.storage.bucket == "shoal"


def test_the_effective_config_reloads_to_the_same_config():
    cfg = Config.from_dict({"nodes": [NODE], "profile": "local", "auth": "none",
                            "storage": {"endpoint": "https://ak:sk@s3.example", "part_size": "8 MiB"}})
    text = effective_yaml(cfg)
    assert "sk@" not in text and "ak:***@s3.example" in text and "part_size: 8 MiB" in text
    again = Config.from_dict(yaml.safe_load(text))
    assert again.timing == cfg.timing and again.membership == cfg.membership
    assert again.auth == cfg.auth and again.storage.part_size == cfg.storage.part_size


def test_the_local_profile_is_the_default_with_the_file_keys_on_top():
    cfg = Config.from_dict({"nodes": [NODE], "profile": "local", "timing": {"lease_seconds": 9}})
    local = Config.from_dict({"nodes": [NODE]}).local()
    assert cfg.timing.lease_seconds == 9.0 and cfg.timing.recovery_interval == local.timing.recovery_interval
    assert cfg.membership == local.membership and cfg.processing == local.processing
