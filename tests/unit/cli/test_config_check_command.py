"""`shoal config check`: the effective configuration as YAML (exit 0), or every problem with its
path (exit 2). Given a cluster.yml in a temporary folder, when the command runs, then ..."""

from __future__ import annotations

import yaml

from cli.main import main
from node.config import Config

GOOD = """
nodes: [{id: n1, host: 127.0.0.1, http_port: 8001, gossip_port: 7001}]
profile: local
storage: {endpoint: "http://key:hunter2@127.0.0.1:9000", part_size: 8 MiB}
"""
BAD = """
nodes: [{id: n1, host: 127.0.0.1, http_port: "8001", gossip_port: 7001}]
storag: {bucket: shoal}
cache: {fast_lane: "no"}
ladder: [{name: 240p, height: 240, video_kbps: 400, fps: 30}]
"""


def test_a_good_file_prints_the_effective_config_with_defaults_and_secrets_masked(tmp_path, capsys):
    path = tmp_path / "cluster.yml"
    path.write_text(GOOD)
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    doc = yaml.safe_load(out)
    assert doc["membership"]["probe_interval"] == 0.3  # the local profile, filled in
    assert doc["cache"]["max_bytes"] == "512 MiB" and doc["storage"]["part_size"] == "8 MiB"
    assert "hunter2" not in out and doc["storage"]["endpoint"] == "http://key:***@127.0.0.1:9000"
    assert doc["state_dir"] == str(tmp_path / ".shoal")
    assert Config.from_dict(doc).timing == Config.load(path).timing  # it reads back


def test_a_bad_file_prints_every_problem_and_exits_2(tmp_path, capsys):
    path = tmp_path / "cluster.yml"
    path.write_text(BAD)
    assert main(["config", "check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == f"{path}: 4 problems"
    assert [line.strip().split(":")[0] for line in lines[1:]] == [
        "top level", "nodes[0].http_port", "ladder[0]", "cache.fast_lane"]
    assert 'nodes[0].http_port: expected a whole number, got "8001"' in captured.err


def test_a_missing_file_or_bad_yaml_is_one_problem(tmp_path, capsys):
    assert main(["config", "check", "--config", str(tmp_path / "none.yml")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "c.yml").write_text("nodes: [\n")
    assert main(["config", "check", "--config", str(tmp_path / "c.yml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
