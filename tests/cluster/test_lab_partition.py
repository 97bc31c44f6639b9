"""The lab under a real partition: hosts up, an upload, iptables cuts the owner from its peers,
the others declare it dead and take its videos over; then `lab down` leaves nothing behind.

Given a lab of 3 Shoal hosts and a distributed SeaweedFS (master + filer + S3 gateway in one
namespace, three volume servers in three more), all in network namespaces on one bridge, when a
tiny video is uploaded and ready and its owner's namespace drops every packet to and from the
other two node hosts (storage still reachable), then both survivors see the owner `dead` within
``DEAD_BOUND`` seconds, both name the same other node as the video's owner, playback still works
through a survivor, and a new upload through a survivor reaches `ready`.  When then one weed
volume server is killed with SIGKILL, every object in the bucket still reads through S3
(replication 001).  Finally ``lab down`` removes every namespace, link and process of the lab.

Real parts only: real namespaces, veth pairs, a bridge and iptables, real weed servers, real node
processes and ffmpeg.  Skips only where the machine refuses to make a network namespace.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import trio
import trio_asyncio

import storage

from cli.lab import leftovers
from cli.launcher import load_or_create_secrets
from lab_support import auth_header, lab_for_test, node_urls, upload_ready, wait_ready
from media import make_video

pytestmark = pytest.mark.cluster

DEAD_BOUND = 20.0  # seconds from the cut to `dead` on every survivor (profile local: ~3-6 s)
READY_BOUND = 90.0


@pytest.fixture
def lab(tmp_path):
    with lab_for_test(tmp_path, "t") as the_lab:
        yield the_lab


def _members(http: httpx.Client, url: str) -> dict[str, str]:
    return {m["id"]: m["state"] for m in http.get(url + "/v1/cluster/members").json()["members"]}


def _read_every_object(endpoint: str, access_key: str, secret_key: str) -> tuple[int, list[str]]:
    """(objects listed, keys that failed to read) of the lab's bucket, through S3."""
    async def main() -> tuple[int, list[str]]:
        async with trio_asyncio.open_loop():
            async with storage.open_store(endpoint, "shoal", access_key=access_key,
                                          secret_key=secret_key, create_bucket=False,
                                          read_timeout=10) as st:
                infos = await st.list_all("")
                failed = []
                for info in infos:
                    try:
                        await st.get(info.key)
                    except storage.StorageError as e:
                        failed.append(f"{info.key}: {e}")
                return len(infos), failed
    return trio.run(main)


def test_lab_partition_owner_declared_dead_and_taken_over_then_nothing_left(lab, tmp_path):
    # given: the lab is up (3 node hosts, distributed storage)
    t0 = time.monotonic()
    config = lab.up()
    up_s = time.monotonic() - t0
    plan = lab.plan
    urls = node_urls(plan)
    secrets = load_or_create_secrets(plan.state_dir / "secrets.json")  # its S3 keys, below
    auth = auth_header(plan)
    assert config.exists() and "10.213." in config.read_text()
    src = make_video(tmp_path / "clip.mp4", seconds=3, width=320, height=240)

    with httpx.Client(timeout=10) as http:
        vid, owner = upload_ready(http, urls["n1"], src, auth, READY_BOUND)
        survivors = [n for n in urls if n != owner]

        # when: the owner's namespace drops every packet to and from the other node hosts
        t_cut = time.monotonic()
        lab.cut(owner, survivors)

        # then: every survivor declares it dead, within the bound
        seen_dead: dict[str, float] = {}
        while len(seen_dead) < len(survivors):
            for n in survivors:
                if n not in seen_dead and _members(http, urls[n]).get(owner) == "dead":
                    seen_dead[n] = time.monotonic() - t_cut
            assert time.monotonic() - t_cut < DEAD_BOUND, (owner, seen_dead)
            time.sleep(0.2)
        # ... the owner is still up and reaches storage: only its peers are cut
        assert http.get(urls[owner] + "/healthz").status_code == 200

        # ... and another node takes the video over: the survivors agree on a new owner
        new_owners = {http.get(f"{urls[n]}/v1/cluster/owner/{vid}").json()["owner"] for n in survivors}
        assert len(new_owners) == 1 and owner not in new_owners, new_owners
        # ... playback goes on through a survivor (the owner hop fails; storage answers)
        master = http.get(f"{urls[survivors[0]]}/v1/videos/{vid}/hls/master.m3u8")
        assert master.status_code == 200 and master.text.startswith("#EXTM3U")
        variant = next(ln for ln in master.text.splitlines() if ln and not ln.startswith("#"))
        playlist = http.get(f"{urls[survivors[0]]}/v1/videos/{vid}/hls/{variant}")
        assert playlist.status_code == 200
        segment = next(ln for ln in playlist.text.splitlines() if ln and not ln.startswith("#"))
        base = variant.rsplit("/", 1)[0]
        seg = http.get(f"{urls[survivors[0]]}/v1/videos/{vid}/hls/{base}/{segment}")
        assert seg.status_code == 200 and len(seg.content) > 0
        # ... and new work still gets done while the partition holds
        r2 = http.post(urls[survivors[1]] + "/v1/videos", content=src.read_bytes(),
                       headers={**auth, "X-Filename": "second.mp4"})
        assert r2.status_code == 201, r2.text
        wait_ready(http, urls[survivors[0]], r2.json()["id"], READY_BOUND)

    print(f"lab up {up_s:.1f} s; cut {owner} from {survivors}: dead after "
          + ", ".join(f"{n} {s:.1f} s" for n, s in sorted(seen_dead.items())))

    # and: one volume server dies (kill -9); every object still reads (replication 001)
    assert lab.signal_process("volume-v1", signal.SIGKILL)
    listed, failed = _read_every_object(plan.s3_endpoint, secrets.s3_access_key, secrets.s3_secret_key)
    assert listed >= 10 and failed == [], (listed, failed)

    # finally: lab down removes every namespace, link and process it made
    lab.down()
    left = leftovers(plan.name, plan.dir)
    assert left == {"netns": [], "links": [], "processes": []}, left
