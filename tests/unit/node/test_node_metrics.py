"""node.metrics and node.http.edge's pure parts: route classes, what each recording method
adds to the registry, the collectors over statistics(), and the access_log setting."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from membership.runtime import MembershipStatistics
from node.config import Config, ConfigError
from node.http.edge import route_class
from node.metrics import (NodeMetrics, NodeState, Reading, cache_families, membership_families,
                          node_families, status_class, worker_families)
from node.play.segcache import CacheStatistics
from node.process.worker import WorkerStats


@pytest.mark.parametrize("method,path,expect", [
    ("GET", "/v1/videos/01ABC/hls/master.m3u8", "playback_miss"),  # the handler refines it
    ("HEAD", "/v1/videos/01ABC/hls/360p/seg_00001.ts", "playback_miss"),
    ("GET", "/v1/videos/01ABC", "api"),
    ("DELETE", "/v1/videos/01ABC", "api"),
    ("GET", "/v1/videos", "api"),
    ("POST", "/v1/videos", "upload_one_shot"),
    ("PATCH", "/v1/uploads/01ABC", "tus_patch"),
    ("HEAD", "/v1/uploads/01ABC", "tus_other"),
    ("POST", "/v1/uploads", "tus_other"),
    ("OPTIONS", "/v1/uploads", "tus_other"),
    ("GET", "/v1/internal/objects/01ABC/out/1/360p/seg_00001.ts", "internal_hop"),
    ("POST", "/v1/internal/wake", "internal"),
    ("POST", "/v1/internal/evict", "internal"),
    ("GET", "/healthz", "ops"),
    ("GET", "/readyz", "ops"),
    ("GET", "/metrics", "ops"),
    ("GET", "/v1/node", "ops"),
    ("GET", "/v1/cluster/members", "ops"),
    ("POST", "/v1/debug/gossip-block", "ops"),
    ("GET", "/", "web"),
    ("GET", "/static/app.js", "web"),
    ("GET", "/v1/nothing", "api"),
    ("GET", "/favicon.ico", "other"),
    ("GET", "", "other"),
])
def test_route_class_by_path(method, path, expect):
    assert route_class(method, path) == expect


@pytest.mark.parametrize("status,expect", [(0, "none"), (101, "1xx"), (200, "2xx"), (206, "2xx"),
                                           (304, "3xx"), (416, "4xx"), (503, "5xx"), (600, "none")])
def test_status_class(status, expect):
    assert status_class(status) == expect


def value(m: NodeMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_a_request_is_one_observation_and_its_body_bytes():
    # given fresh metrics, when two requests of one class and one of another are recorded
    m = NodeMetrics(process=False)
    m.request("upload_one_shot", 201, 1000, 300, 0.2)
    m.request("upload_one_shot", 201, 24, 300, 0.004)
    m.request("playback_hit", 0, 0, 0, 0.001)  # the client went away
    # then each is one observation under its route and status class, bytes summed by route
    assert value(m, "shoal_http_request_duration_seconds_count", route="upload_one_shot", status="2xx") == 2
    assert value(m, "shoal_http_request_duration_seconds_sum", route="upload_one_shot", status="2xx") == \
        pytest.approx(0.204)
    assert value(m, "shoal_http_request_duration_seconds_bucket", route="upload_one_shot", status="2xx",
                 le="0.005") == 1
    assert value(m, "shoal_http_request_duration_seconds_count", route="playback_hit", status="none") == 1
    assert value(m, "shoal_http_received_bytes_total", route="upload_one_shot") == 1024
    assert value(m, "shoal_http_sent_bytes_total", route="upload_one_shot") == 600
    assert value(m, "shoal_http_sent_bytes_total", route="playback_hit") is None  # nothing sent: no series


def test_storage_tus_and_transcode_recordings():
    m = NodeMetrics(process=False)
    m.storage("cas", 0.01, True)
    m.storage("cas", 0.02, False)
    m.tus_patch({"lock": 4.0, "receive": 100.0, "drain": 2.0, "commit": 8.0})
    m.tus_patch({"lock": 6.0})
    m.transcoded(3.0, 6.0)
    m.transcoded(1.0, 0.0)  # a source without a duration: seconds counted, no ratio
    assert value(m, "shoal_storage_request_duration_seconds_count", operation="cas", outcome="ok") == 1
    assert value(m, "shoal_storage_request_duration_seconds_count", operation="cas", outcome="error") == 1
    assert value(m, "shoal_tus_patch_phase_seconds_count", phase="lock") == 2
    assert value(m, "shoal_tus_patch_phase_seconds_sum", phase="lock") == pytest.approx(0.010)
    assert value(m, "shoal_tus_patch_phase_seconds_sum", phase="receive") == pytest.approx(0.1)
    assert value(m, "shoal_transcode_seconds_total") == 4.0
    assert value(m, "shoal_transcoded_video_seconds_total") == 6.0
    assert value(m, "shoal_transcode_seconds_per_video_second_count") == 1
    assert value(m, "shoal_transcode_seconds_per_video_second_sum") == 0.5


def test_events_are_counters_and_the_node_view_of_them():
    m = NodeMetrics(process=False)
    m.events.uploads_accepted.inc()
    m.events.upload_bytes.inc(5000)
    assert value(m, "shoal_uploads_accepted_total") == 1
    counts = m.events.values()
    assert counts["uploads_accepted"] == 1 and counts["upload_bytes"] == 5000 and counts["tus_patches"] == 0


# the parts' own statistics types, so that a field the collectors read and the part renames fails here
MEMBERSHIP_STATS = MembershipStatistics(
    probes_sent=7, indirect_probes_sent=1, acks_received=6, suspicions=1, deaths=0, refutations=0,
    stream_pings_sent=1, stream_acks_received=0, health_score=2, packets_sent=30, packets_received=29,
    bytes_sent=3000, bytes_received=2900, push_pulls=1, dropped={"bad_mac": 3}, replay_forgotten=0)
WORKER_STATS = WorkerStats(claims=2, commits=1, commits_lost=0, leases_lost=0, failures=0, retries=1,
                           scans=9, units_committed=3, units_lost=1, jobs={"v1": object()})


def test_collectors_read_statistics_at_scrape_time():
    # given metrics with collectors over parts' statistics
    m = NodeMetrics(process=False)
    cache = {"st": CacheStatistics(hits=1, misses=2, coalesced=0, storage_reads=2, owner_hops=0,
                                   hop_fallbacks=0, peer_requests=0, evictions=0, entries=2,
                                   bytes_cached=4096, max_bytes=1 << 20)}
    m.registry.register(Reading(lambda: cache_families(cache["st"])))
    m.registry.register(Reading(lambda: membership_families(MEMBERSHIP_STATS, ["alive", "alive", "dead"])))
    m.registry.register(Reading(lambda: worker_families(WORKER_STATS)))
    m.registry.register(Reading(lambda: node_families(NodeState(12.5, True))))
    # when the statistics change after registration, then the scrape reads the new values
    cache["st"] = CacheStatistics(**{**cache["st"].__dict__, "hits": 5})
    fams = {f.name: f for f in text_string_to_metric_families(m.text().decode())}
    assert fams["shoal_cache_hits"].type == "counter" and fams["shoal_cache_hits"].samples[0].value == 5
    assert fams["shoal_cache_bytes"].type == "gauge" and fams["shoal_cache_bytes"].samples[0].value == 4096
    assert value(m, "shoal_gossip_probes_sent_total") == 7
    assert value(m, "shoal_gossip_sent_bytes_total") == 3000
    assert value(m, "shoal_gossip_dropped_total", reason="bad_mac") == 3
    assert fams["shoal_gossip_health_score"].type == "gauge"
    assert {s.labels["state"]: s.value for s in fams["shoal_members"].samples} == \
        {"alive": 2, "suspect": 0, "dead": 1, "left": 0}
    assert value(m, "shoal_worker_claims_total") == 2 and value(m, "shoal_jobs_in_flight") == 1
    assert value(m, "shoal_up") == 1 and value(m, "shoal_storage_ok") == 1
    assert value(m, "shoal_uptime_seconds") == 12.5


def test_two_nodes_in_one_process_have_separate_registries():
    a, b = NodeMetrics(process=False), NodeMetrics(process=True)
    a.events.tus_patches.inc()
    assert value(a, "shoal_tus_patches_total") == 1 and value(b, "shoal_tus_patches_total") == 0
    assert value(b, "process_resident_memory_bytes") > 0 and value(a, "process_resident_memory_bytes") is None


BASE = {"nodes": [{"id": "n1", "host": "127.0.0.1", "http_port": 8001, "gossip_port": 9001}]}


@pytest.mark.parametrize("raw,expect", [({}, True), ({"access_log": False}, False), ({"access_log": True}, True)])
def test_access_log_setting(raw, expect):
    assert Config.from_dict({**BASE, **raw}).access_log is expect


@pytest.mark.parametrize("bad", ["no", 0, "false"])  # a key with no value keeps its default
def test_access_log_must_be_a_boolean(bad):
    with pytest.raises(ConfigError, match="access_log: expected true or false"):
        Config.from_dict({**BASE, "access_log": bad})
