"""`lab down` after a crash: `shoal lab up` killed with SIGKILL while it starts, then `shoal lab
down` removes every namespace, link and process that the dead command made.

Given `shoal lab up` running as its own process, when it is killed outright once the weed servers
run (its state file lists them), then its processes keep running inside the lab's namespaces,
and `shoal lab down` with the same name and folder leaves nothing with the lab's prefix.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.lab import Lab, leftovers
from lab_support import free_subnet, namespace_refusal

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def test_lab_down_cleans_up_after_lab_up_was_killed(tmp_path):
    reason = namespace_refusal()
    if reason:
        print(f"skipping the lab test: {reason}")
        pytest.skip(reason)
    rng = random.Random()
    name = "c" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(3))
    lab_dir = tmp_path / "lab"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    shoal = [sys.executable, "-m", "cli.main", "lab"]
    up = subprocess.Popen([*shoal, "up", "--name", name, "--dir", str(lab_dir), "--subnet",
                           free_subnet(rng)], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # when: `lab up` dies outright once the storage servers run
        deadline = time.monotonic() + 60
        while True:
            try:
                pids = json.loads((lab_dir / "lab.json").read_text())["pids"]
            except (FileNotFoundError, ValueError):
                pids = {}
            if "s3" in pids:
                break
            assert up.poll() is None and time.monotonic() < deadline, "lab up never started weed"
            time.sleep(0.1)
        os.kill(up.pid, signal.SIGKILL)
        up.wait(10)
        left = leftovers(name, lab_dir)
        assert left["netns"] and left["links"] and left["processes"]  # the crash left them

        # then: `lab down` removes them all
        done = subprocess.run([*shoal, "down", "--name", name, "--dir", str(lab_dir)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert leftovers(name, lab_dir) == {"netns": [], "links": [], "processes": []}
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        if any(leftovers(name, lab_dir).values()):  # a failed assertion above: still clean up
            Lab.open(name, lab_dir).down()
