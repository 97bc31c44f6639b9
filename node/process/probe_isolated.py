"""Probe a media file in a child process: ``python -m node.process.probe_isolated <path>``.

The worker probes every upload with PyAV (libavformat/libavcodec).  Doing that in a
child process keeps the node's memory small (PyAV and its codecs stay out of the node,
about 30 MiB) and keeps a file that crashes a decoder from taking the node down with
it: a crash becomes a clear ``UndecodableInput`` instead.

The child prints one JSON line: ``{"probe": {...}}`` or ``{"undecodable": "<reason>"}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import trio

from node.process.errors import UndecodableInput
from node.process.probe import Probe, probe

PROBE_TIMEOUT = 120.0  # seconds; a probe decodes headers and one frame


async def probe_isolated(path: str | os.PathLike[str], *, timeout: float = PROBE_TIMEOUT) -> Probe:
    """Probe in a child process.  Raises UndecodableInput (the user's file) or OSError (ours)."""
    with trio.move_on_after(timeout) as scope:
        done = await trio.run_process([sys.executable, "-m", "node.process.probe_isolated", os.fspath(path)],
                                      capture_stdout=True, capture_stderr=True, check=False)
    if scope.cancelled_caught:
        raise UndecodableInput(f"probing took longer than {timeout:.0f} s")
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode < 0:  # killed by a signal: the decoder crashed on this input
        raise UndecodableInput(f"the decoder crashed on this file (signal {-done.returncode})")
    if done.returncode != 0 or not lines:
        raise OSError(f"probe process failed ({done.returncode}): "
                      f"{done.stderr.decode(errors='replace')[-500:]}")
    out = json.loads(lines[-1])
    if "undecodable" in out:
        raise UndecodableInput(out["undecodable"])
    return Probe(**out["probe"])


def main(argv: list[str]) -> int:
    try:
        result = {"probe": dataclasses.asdict(probe(argv[1]))}
    except UndecodableInput as e:
        result = {"undecodable": str(e)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
