"""Hostile media end to end: real node processes, the real S3 server (SeaweedFS), real ffmpeg.

Given a 2-node cluster, when two hostile files (two frames ten hours apart; an ffconcat list
naming the node's own files) and one good video are uploaded, then each hostile one is `failed`
after one attempt, with a named reason and a public error holding no path or traceback, and the
good one becomes `ready` (docs/security.md "Media: resource limits and what ffmpeg may open").
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

import media
from conftest import TEST_LADDER
from harness import upload, wait_state

pytestmark = pytest.mark.cluster

LEAK = re.compile(r"(?<![A-Z])/[\w.-]+/|://|Traceback")


def test_hostile_uploads_fail_at_once_with_clean_errors_and_a_good_one_is_ready(cluster_factory, tmp_path):
    c = cluster_factory(2, {"ladder": TEST_LADDER})
    good = media.make_video(tmp_path / "ok.mp4", seconds=2)
    gap = media.make_timestamp_gap(tmp_path / "gap.mkv", gap=36000)
    concat = media.make_ffconcat(tmp_path / "list.txt", good, c.config_path, "/etc/passwd")

    t0 = time.monotonic()
    ids = {}
    for name, path, node in [("gap", gap, "n1"), ("concat", concat, "n2"), ("good", good, "n1")]:
        r = upload(c, node, path)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]

    expected = {"gap": ("media_limit", "duration 36001 s is over media.max_duration_s (21600 s)"),
                "concat": ("undecodable_input", "not in a video container we accept")}
    for name, (code, words) in expected.items():
        rec = wait_state(c, "n2", ids[name], {"failed", "ready"}, timeout=90)
        took = time.monotonic() - t0
        print(f"{name}: failed {took:.1f} s after the uploads began")  # seconds, not a transcode
        assert rec["state"] == "failed", rec
        assert rec["attempts"] == 1, rec  # the user's bytes: no retry
        assert rec["error"]["code"] == code and words in rec["error"]["message"], rec["error"]
        raw = httpx.get(c.url("n1") + f"/v1/videos/{ids[name]}").text  # the API, as anyone reads it
        assert not LEAK.search(rec["error"]["message"]), rec["error"]
        assert str(tmp_path) not in raw and "Traceback" not in raw

    rec = wait_state(c, "n1", ids["good"], {"ready", "failed"}, timeout=120)
    assert rec["state"] == "ready" and rec["attempts"] == 1 and rec["error"] is None
