"""Loaded by every Python process started with this folder on PYTHONPATH (scripts/trace_paths.py).

When SHOAL_TRACE_DIR is set: SIGUSR1 starts recording which source files have a function called
on behalf of an HTTP connection, SIGUSR2 stops and writes them to SHOAL_TRACE_DIR/<pid>.txt.
"On behalf of a connection": in a trio task that ran the fast lane (every connection to a node
starts there, in this version and the ones before it) or in a task spawned under one, so the
node's background work (gossip, the worker's scan, the storage probe) is not counted.  Calls on
worker threads are not seen (sys.setprofile covers the main thread, where trio runs the node).
Without SHOAL_TRACE_DIR nothing happens.
"""
import os
import signal
import sys

_DIR = os.environ.get("SHOAL_TRACE_DIR")
if _DIR:
    _files: set[str] = set()
    _roots: set[int] = set()

    def _on_behalf_of_a_connection(task) -> bool:
        while task is not None:
            if id(task) in _roots:
                return True
            nursery = task.parent_nursery
            task = nursery.parent_task if nursery is not None else None
        return False

    def _profile(frame, event, arg):
        if event != "call":
            return
        trio = sys.modules.get("trio")
        try:
            task = trio.lowlevel.current_task() if trio else None
        except RuntimeError:
            return
        if task is None:
            return
        name = frame.f_code.co_filename
        if name.endswith("fastlane.py"):
            _roots.add(id(task))
        if _on_behalf_of_a_connection(task):
            _files.add(name)

    def _start(signum, frame):
        _files.clear()
        _roots.clear()
        sys.setprofile(_profile)

    def _stop(signum, frame):
        sys.setprofile(None)
        with open(os.path.join(_DIR, f"{os.getpid()}.txt"), "w") as f:
            f.write("\n".join(sorted(_files)))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
