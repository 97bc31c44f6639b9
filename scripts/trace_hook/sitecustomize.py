"""Loaded by every Python process started with this folder on PYTHONPATH (scripts/trace_paths.py).

When SHOAL_TRACE_DIR is set: SIGUSR1 starts recording which source files have a function called
(sys.setprofile on the main thread, where trio runs the node); SIGUSR2 stops and writes them to
SHOAL_TRACE_DIR/<pid>.txt.  Without SHOAL_TRACE_DIR nothing happens.
"""
import os
import signal
import sys

_DIR = os.environ.get("SHOAL_TRACE_DIR")
if _DIR:
    _files: set[str] = set()

    def _profile(frame, event, arg):
        if event == "call":
            _files.add(frame.f_code.co_filename)

    def _start(signum, frame):
        _files.clear()
        sys.setprofile(_profile)

    def _stop(signum, frame):
        sys.setprofile(None)
        with open(os.path.join(_DIR, f"{os.getpid()}.txt"), "w") as f:
            f.write("\n".join(sorted(_files)))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
