"""docs/reference.md is generated from the config types: given the page in the repository, when
the generator renders it from the code, then the two are the same (run the script to update)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import msgspec

from membership import MembershipConfig
from node import config

REPO = Path(__file__).resolve().parents[3]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_md_matches_the_code():
    gen = _generator()
    assert (REPO / "docs" / "reference.md").read_text() == gen.render(), (
        "docs/reference.md is stale: run `python scripts/gen_reference.py`")


def test_every_section_and_key_of_the_config_is_on_the_page():
    gen = _generator()
    page = (REPO / "docs" / "reference.md").read_text()
    sections = {name for _, name in gen.SECTIONS}
    for f in msgspec.structs.fields(config.Config):
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct) and f.name not in ("nodes",):
            assert f.name in sections, f"section {f.name} is missing from scripts/gen_reference.py"
        else:
            assert f"| `{f.name}` |" in page, f"top-level key {f.name} is missing from the page"
    for cls, name in gen.SECTIONS:
        for f in msgspec.structs.fields(cls):
            assert f"| {name} | `{f.name}` |" in page
    assert gen.SECTIONS[1] == (MembershipConfig, "membership")
