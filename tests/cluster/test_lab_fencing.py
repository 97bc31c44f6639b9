"""Fencing under a real partition: the lease holder is cut from storage in the middle of a
transcode (iptables in its namespace), and exactly one commit happens.

Given a lab of 3 Shoal hosts on distributed SeaweedFS and a 30 s source, when the node holding
the video's lease is seen transcoding it and its namespace then drops every packet to and from
the storage host (S3 gateway, filer, master; its peers stay reachable), then:

- it reports itself unready: ``/readyz`` 503 within ``UNREADY_BOUND`` (the storage probe runs
  every 1 s and gives up after 3 s: node/main.py);
- it stops its attempt once it cannot renew: a ``lease_lost`` line for its epoch within
  ``STOP_BOUND`` of the cut (lease 6 s under profile local; renewals every 2 s, each bounded by
  2 s: node/process/worker.py) and no ffmpeg left among its children;
- another node claims a higher epoch and commits; after the cut node is healed and ready again,
  the record still shows exactly one `ready` transition, of that higher epoch, and exactly one
  ``video_committed`` line exists across every node's log.

Real parts only (namespaces, iptables, weed servers, node processes, ffmpeg).  Skips only where
the machine refuses to make a network namespace.
"""

from __future__ import annotations

import json
import time

import httpx
import psutil
import pytest

from cli.lab import Lab, leftovers
from lab_support import auth_header, lab_for_test, node_urls, poll_until
from media import make_video

pytestmark = pytest.mark.cluster

UNREADY_BOUND = 6.0  # s from the cut to /readyz 503: probe interval 1 s + probe bound 3 s, + polling and slack
STOP_BOUND = 15.0  # s from the cut to `lease_lost`: lease 6 s + one renewal period and its bound (4 s)
READY_BOUND = 120.0


@pytest.fixture
def fence_lab(tmp_path):
    with lab_for_test(tmp_path, "f") as the_lab:
        yield the_lab


def _log(lab: Lab, node: str) -> list[dict]:
    path = lab.plan.state_dir / "logs" / f"{node}.log"
    return [json.loads(ln) for ln in path.read_text(errors="replace").splitlines() if ln.startswith("{")]


def test_holder_cut_from_storage_mid_transcode_stops_and_exactly_one_commit(fence_lab, tmp_path):
    lab = fence_lab
    lab.up()
    plan = lab.plan
    urls = node_urls(plan)
    src = make_video(tmp_path / "long.mp4", seconds=30, width=320, height=240)

    with httpx.Client(timeout=5) as http:
        r = http.post(urls["n1"] + "/v1/videos", content=src.read_bytes(),
                      headers={**auth_header(plan), "X-Filename": "long.mp4"})
        assert r.status_code == 201, r.text
        vid = r.json()["id"]

        # given: some node is transcoding it under a lease
        def transcoding():
            for n, url in urls.items():
                for job in http.get(url + "/v1/node").json()["jobs"]:
                    if job["video"] == vid and job["phase"] == "transcoding":
                        return n, job["epoch"]
            return None
        holder, epoch = poll_until(transcoding, lambda x: x is not None, timeout=60, interval=0.05)

        # when: the holder's namespace drops every packet to and from the storage host
        t_cut = time.monotonic()
        lab.cut(holder, ["s0"])

        # then: it reports itself unready within the bound
        poll_until(lambda: http.get(urls[holder] + "/readyz").status_code, lambda s: s == 503,
                   timeout=UNREADY_BOUND, interval=0.2)
        unready_s = time.monotonic() - t_cut

        # ... and stops its attempt once it cannot renew
        def lost():
            return [e for e in _log(lab, holder) if e["event"] == "lease_lost"
                    and e.get("video") == vid and e.get("epoch") == epoch]
        poll_until(lost, bool, timeout=STOP_BOUND, interval=0.2)
        stop_s = time.monotonic() - t_cut
        pid = int((plan.state_dir / "pids" / f"{holder}.pid").read_text())
        poll_until(lambda: [c.name() for c in psutil.Process(pid).children(recursive=True)],
                   lambda names: not any("ffmpeg" in n for n in names), timeout=5, interval=0.2)

        # ... another node claims a higher epoch and commits
        survivor = next(n for n in urls if n != holder)
        rec = poll_until(lambda: http.get(f"{urls[survivor]}/v1/videos/{vid}").json(),
                         lambda rec: rec.get("state") in ("ready", "failed"), timeout=READY_BOUND, interval=0.3)
        assert rec["state"] == "ready", rec
        assert rec["epoch"] > epoch

        # when the partition heals, the holder is ready again and still never commits
        lab.heal(holder)
        poll_until(lambda: http.get(urls[holder] + "/readyz").status_code, lambda s: s == 200,
                   timeout=20, interval=0.2)
        time.sleep(3)  # a stale attempt, had one survived, would try its commit now
        rec = http.get(f"{urls[survivor]}/v1/videos/{vid}").json()

    readies = [h for h in rec["history"] if h["state"] == "ready"]
    assert len(readies) == 1 and readies[0]["epoch"] == rec["epoch"] > epoch, rec["history"]
    assert readies[0]["node"] != holder
    commits = [(n, e["epoch"]) for n in urls for e in _log(lab, n)
               if e["event"] == "video_committed" and e.get("video") == vid]
    assert commits == [(readies[0]["node"], rec["epoch"])], commits
    print(f"holder {holder} (epoch {epoch}) cut from storage mid-transcode: /readyz 503 after "
          f"{unready_s:.1f} s, lease_lost after {stop_s:.1f} s; "
          f"{readies[0]['node']} committed epoch {rec['epoch']}")

    lab.down()
    left = leftovers(plan.name, plan.dir)
    assert left == {"netns": [], "links": [], "processes": []}, left
