"""The lab's state file: what ``lab up`` made, written *before* each thing is made.

``<lab dir>/lab.json`` lists the bridge, namespaces, links, root rules and processes of one lab.
Invariant: an entry is recorded before the thing it names exists (intent first), so a crash at
any point leaves a file that names everything there may be to remove; ``lab down`` then removes
what exists and ignores what never came to be.  The name prefix (``cli.lab.plan.prefix``) is the
second net: a sweep by prefix finds what even a lost state file would miss.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["LabState", "STATE_FILE"]

STATE_FILE = "lab.json"


@dataclass
class LabState:
    name: str
    prefix: str
    subnet: str
    dir: str
    hosts: int = 0  # Shoal hosts (h1..hN), so later commands rebuild the same plan
    bridge: str | None = None
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    root_rules: list[list[str]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # process name -> pid (its own group)

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, lab_dir: Path) -> "LabState | None":
        try:
            raw = json.loads((lab_dir / STATE_FILE).read_text())
            return cls(**raw)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # damaged: the prefix sweep still finds everything
            return None

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
