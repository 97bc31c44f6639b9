"""MembershipConfig: memberlist's LAN defaults, the local profile as changes, range checks."""

from __future__ import annotations

import msgspec

import pytest

from membership import MembershipConfig


def test_defaults_are_memberlists_lan_config_where_it_has_the_knob():
    c = MembershipConfig()
    assert (c.probe_interval, c.probe_timeout, c.indirect_probes, c.suspicion_mult,
            c.push_pull_interval) == (1.0, 0.5, 3, 4.0, 30.0)


def test_local_profile_changes_only_the_timers_it_names():
    base, local = MembershipConfig(), MembershipConfig().local()
    changed = {f.name for f in msgspec.structs.fields(base)
               if getattr(base, f.name) != getattr(local, f.name)}
    assert changed == {"probe_interval", "probe_timeout", "push_pull_interval", "stream_timeout"}
    assert (local.probe_interval, local.probe_timeout, local.push_pull_interval) == (0.3, 0.15, 5.0)


@pytest.mark.parametrize("kw", [{"max_streams": 0}, {"replay_memory": 0}, {"max_members": 0},
                                {"indirect_probes": -1}, {"packet_window": 0},
                                {"probe_interval": "1s"}, {"probe_timeout": 1.0},
                                {"suspicion_mult": 0.5}, {"max_streams": True}])
def test_out_of_range_values_are_refused(kw):
    with pytest.raises(ValueError, match="membership"):
        MembershipConfig(**kw)
