"""Count the project files two requests run through, on a real 3-node cluster.

    cd <checkout> && .venv/bin/python /path/to/scripts/trace_paths.py

Run from the root of the checkout to measure (it uses that checkout's tests/harness.py and node
code, so an older commit can be measured the same way).  Each node runs with
scripts/trace_hook/sitecustomize.py: a signal starts recording which source files have a function
called on the node's main thread (where trio runs it), another stops and dumps them.  Measured:
1. a one-shot upload (POST /v1/videos) on the node that receives it;
2. a segment GET on a node that does not own the video (after the player read the playlists
   there), and on the owner that answers its hop.
Printed as markdown: the count and the files, by folder.  docs/architecture.md quotes it.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path.cwd()
HOOK = Path(__file__).resolve().parent / "trace_hook"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def main() -> None:
    trace_dir = Path(tempfile.mkdtemp(prefix="shoal-trace-"))
    os.environ["SHOAL_TRACE_DIR"] = str(trace_dir)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HOOK), str(REPO)])
    from harness import Cluster, upload, wait_state  # noqa: E402
    import media  # noqa: E402
    from conftest import TEST_LADDER  # noqa: E402

    base = Path(tempfile.mkdtemp(prefix="shoal-trace-cluster-"))
    with Cluster(base, 3, {"ladder": TEST_LADDER}) as c:
        c.start()
        c.wait_ready()
        src = media.make_video(base / "in.mp4", seconds=4, width=320, height=240)
        upload(c, "n1", media.make_video(base / "warm.mp4", seconds=1, width=320, height=240))

        def traced(nodes, action):
            pids = {n: c.pid(n) for n in nodes}
            for p in pids.values():
                os.kill(p, signal.SIGUSR1)
            time.sleep(0.3)
            result = action()
            time.sleep(0.3)
            for p in pids.values():
                os.kill(p, signal.SIGUSR2)
            out = {}
            for n, p in pids.items():
                f = trace_dir / f"{p}.txt"
                for _ in range(50):
                    if f.exists():
                        break
                    time.sleep(0.1)
                out[n] = [x for x in f.read_text().splitlines() if x.startswith(str(REPO) + "/")
                          and "/.venv/" not in x]
                f.unlink()
            return result, out

        r, post = traced(["n1"], lambda: upload(c, "n1", src))
        vid = r.json()["id"]
        wait_state(c, "n1", vid, "ready", timeout=120)
        owner = httpx.get(c.url("n1") + f"/v1/cluster/owner/{vid}").json()["owner"]
        other = next(n for n in c.node_ids if n != owner)
        base_url = c.url(other) + f"/v1/videos/{vid}/hls/"
        master = httpx.get(base_url + "master.m3u8").text
        media_uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
        playlist = httpx.get(base_url + media_uri).text
        seg = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
        seg_url = base_url + media_uri.rsplit("/", 1)[0] + "/" + seg
        _, get = traced([other, owner], lambda: httpx.get(seg_url).raise_for_status())

    def show(title, files):
        rel = sorted(str(Path(f).relative_to(REPO)) for f in files)
        print(f"### {title}: {len(rel)} files\n")
        for f in rel:
            print(f"- `{f}`")
        print()

    show("one-shot upload, the receiving node", post["n1"])
    show("segment GET, the non-owner", get[other])
    show("segment GET, the owner answering the hop", get[owner])


if __name__ == "__main__":
    main()
