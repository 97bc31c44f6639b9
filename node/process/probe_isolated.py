"""Probe a media file in a child process: ``python -m node.process.probe_isolated <path> <limits>``.

The worker probes every upload with PyAV (libavformat/libavcodec).  Doing that in a child
process keeps the node's memory small (PyAV and its codecs stay out of the node, about 30 MiB),
bounds what a hostile file may cost (``RLIMIT_DATA`` = ``media.probe_memory``, set by the child
before PyAV is imported; killed after ``media.probe_timeout_s``), and keeps a file that crashes
a decoder from taking the node down with it.

The child prints one JSON line::

    {"probe": {...}}                             the file is a video within the limits
    {"undecodable": "<reason>"}                  UndecodableInput
    {"limit": {"limit": key, "reason": "..."}}   MediaLimitExceeded
    {"setup": "<what>"}  and exit status 3       the child could not start (ours: OSError)

Whose fault: once the child has started, every failure on the file is the file's (an
exception PyAV raises, a crash by signal, the timeout, running out of memory); only a child
that cannot start, or answers nonsense, is ours (``OSError``: the worker retries).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import msgspec
import trio

from node.config import MediaLimits
from node.process.errors import MediaLimitExceeded, UndecodableInput
from node.process.limits import num
from node.process.probe import Probe

SETUP_FAILED = 3  # exit status of a child that could not import or set its limits
STDERR_LOG = 2000  # bytes of the child's stderr kept for the log


async def probe_isolated(path: str | os.PathLike[str], limits: MediaLimits = MediaLimits()) -> Probe:
    """Probe in a child process.

    Raises UndecodableInput or MediaLimitExceeded (the user's file), OSError (ours).
    """
    arg = json.dumps(msgspec.to_builtins(limits, enc_hook=int))
    with trio.move_on_after(limits.probe_timeout_s) as scope:
        done = await trio.run_process(
            [sys.executable, "-m", "node.process.probe_isolated", os.fspath(path), arg],
            capture_stdout=True, capture_stderr=True, check=False)
    if scope.cancelled_caught:
        raise MediaLimitExceeded("probe_timeout_s", f"probing took longer than media.probe_timeout_s "
                                                    f"({num(limits.probe_timeout_s)} s)")
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode < 0:  # killed by a signal: the decoder crashed on this input
        raise UndecodableInput(f"the decoder crashed on this file (signal {-done.returncode})")
    try:
        out = json.loads(lines[-1]) if lines else {}
    except ValueError:
        out = {}
    if done.returncode == SETUP_FAILED or not isinstance(out, dict) or not out:
        raise OSError(f"probe process failed ({done.returncode}): "
                      f"{done.stderr.decode(errors='replace')[-STDERR_LOG:]}")
    if "undecodable" in out:
        raise UndecodableInput(out["undecodable"])
    if "limit" in out:
        raise MediaLimitExceeded(out["limit"]["limit"], out["limit"]["reason"])
    return Probe(**out["probe"])


def main(argv: list[str]) -> int:
    try:
        import resource

        limits = MediaLimits(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in json.loads(argv[2]).items()})
        resource.setrlimit(resource.RLIMIT_DATA, (limits.probe_memory, limits.probe_memory))
        import av  # noqa: F401  (imported under the limit, before the file is touched)

        from node.process.probe import probe
    except Exception as e:  # ours: the worker retries
        print(json.dumps({"setup": f"{type(e).__name__}: {e}"}), flush=True)
        return SETUP_FAILED
    try:
        result = {"probe": dataclasses.asdict(probe(argv[1], limits))}
    except UndecodableInput as e:
        result = {"undecodable": e.reason}
    except MediaLimitExceeded as e:
        result = {"limit": {"limit": e.limit, "reason": e.reason}}
    except OSError:  # the file we downloaded is missing or unreadable: ours
        raise
    except Exception as e:  # noqa: BLE001  PyAV raised something unexpected on these bytes
        import traceback

        traceback.print_exc()  # to stderr, for the log; never into the record
        result = {"undecodable": f"the file could not be read ({type(e).__name__})"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
