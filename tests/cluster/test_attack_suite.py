"""The attack suite (tests/attack/): every hostile input of the table against one real 3-node cluster.

Given a cluster (real node processes, the embedded SeaweedFS, real ffmpeg) with a ready video whose
master playlist and one segment were read before the attacks, when each case of
attack.cases.CASES is sent, then its answer is clean (the contract's error shape with a fitting
status, or a dropped connection for garbage on a raw socket), nothing leaked (no traceback, local
path or exception name), nothing was lost (the playlist and segment are byte-identical) and every
node is healthy (process alive, /healthz 200).  The cases and what they expect are listed in
docs/security.md, "The attack suite".
"""

from __future__ import annotations

import pytest

from attack import run, target as attack_target
from attack.cases import CASES
from conftest import TEST_LADDER
from harness import Cluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    base = tmp_path_factory.mktemp("attack")
    with Cluster(base / "cluster", 3, {"ladder": TEST_LADDER}) as c:
        yield run.prepare(c, base)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attack(target, case):
    run.run_case(target, case)


def test_after_every_attack_the_video_is_intact_and_every_node_healthy(target):
    attack_target.check_nothing_lost(target)
    attack_target.check_every_node_healthy(target)
    attack_target.members_alive(target)
