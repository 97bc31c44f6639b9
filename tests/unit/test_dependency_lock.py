"""The dependencies: every range in pyproject.toml has an upper bound, and requirements.lock pins
exactly the closure of `shoal[test]` as installed (scripts/lock.py), within those ranges, so
`make install` gives a fresh machine the same versions."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# where we touch internals: the bound is the next minor release (README "Dependencies")
PATCHED = {"hypercorn", "quart-trio", "quart", "hashring", "aioboto3", "aiobotocore", "botocore", "trio"}


def _lock_script():
    spec = importlib.util.spec_from_file_location("lock", REPO / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^=\s]+)", line)
            assert m, f"requirements.lock: {line!r} is not `name==version`"
            assert canonicalize_name(m.group(1)) not in out, f"{m.group(1)} twice"
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def test_every_dependency_has_an_upper_bound_and_patched_ones_the_next_minor():
    pins = locked()
    for req in _lock_script().direct_requirements():
        uppers = [s for s in req.specifier if s.operator in ("<", "<=", "==", "~=")]
        assert uppers, f"pyproject.toml: {req} has no upper bound"
        name = canonicalize_name(req.name)
        if name in PATCHED:  # the bound is the minor release after the locked (checked) one
            (upper,) = [s for s in req.specifier if s.operator == "<"]
            major, minor = pins[name].split(".")[:2]
            assert upper.version == f"{major}.{int(minor) + 1}", (
                f"pyproject.toml: {req}: we touch its internals, checked on {pins[name]}: "
                f"the bound is <{major}.{int(minor) + 1}")


def test_the_lock_pins_every_requirement_within_its_range_and_not_the_project():
    pins = locked()
    assert "shoal" not in pins
    for req in _lock_script().direct_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements.lock lacks {req.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]} outside pyproject.toml's {req}")


def test_the_lock_is_what_scripts_lock_py_makes_from_the_installed_packages():
    # given pyproject.toml and this environment, when the lock is rendered again, then nothing
    # changes: no requirement was added, bumped or dropped without `make lock`
    assert (REPO / "requirements.lock").read_text() == _lock_script().render(), (
        "requirements.lock is stale (or the venv drifted from it): run `make lock`, or `make install`")


def test_install_installs_the_lock_with_no_resolution_of_its_own():
    makefile = (REPO / "Makefile").read_text()
    stamp = makefile[makefile.index("$(STAMP):"):]
    stamp = stamp[: stamp.index("\n\n")]
    assert "requirements.lock" in stamp.splitlines()[0], "the stamp must depend on the lock"
    assert "pip install --quiet -r requirements.lock" in stamp
    assert "--no-deps -e '.[test]'" in stamp and "pip check" in stamp
