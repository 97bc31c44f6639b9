"""The node's secrets: required unless cluster.yml says `auth: none` (node/config.py)."""

from __future__ import annotations

import pytest

from membership.codec import derive_key
from node.config import AuthConfig, Config, ConfigError, SecretsMissing

NODES = [{"id": "n1", "host": "127.0.0.1", "http_port": 8001, "gossip_port": 7001}]


def config(**raw) -> Config:
    return Config.from_dict({"nodes": NODES, **raw})


@pytest.fixture
def no_secrets(monkeypatch):
    for name in ("SHOAL_TOKEN", "SHOAL_CLUSTER_KEY", "MY_TOKEN", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_secrets_are_required_by_default_and_with_the_mapping_form():
    assert config().auth == AuthConfig()
    assert config().auth.required
    cfg = config(auth={"token_env": "MY_TOKEN", "cluster_key_env": "MY_KEY"})
    assert (cfg.auth.token_env, cfg.auth.cluster_key_env, cfg.auth.required) == ("MY_TOKEN", "MY_KEY", True)


def test_auth_none_is_the_one_way_to_run_open():
    assert config(auth="none").auth == AuthConfig(required=False)
    for bad in ("off", "None", "false", ""):
        with pytest.raises(ConfigError, match="auth: none"):
            config(auth=bad)
    with pytest.raises(ConfigError, match="auth: none"):
        config(auth={"required": False})


@pytest.mark.parametrize("given, missing", [
    ({}, ["SHOAL_TOKEN", "SHOAL_CLUSTER_KEY"]),
    ({"SHOAL_TOKEN": "t" * 32}, ["SHOAL_CLUSTER_KEY"]),
    ({"SHOAL_CLUSTER_KEY": "k" * 32}, ["SHOAL_TOKEN"]),
    ({"SHOAL_TOKEN": "", "SHOAL_CLUSTER_KEY": "k" * 32}, ["SHOAL_TOKEN"]),  # empty = missing
])
def test_a_missing_secret_refuses_the_start(no_secrets, given, missing):
    for k, v in given.items():
        no_secrets.setenv(k, v)
    with pytest.raises(SecretsMissing) as e:
        config().require_secrets()
    for name in missing:
        assert f"${name}" in str(e.value)
    assert "auth: none" in str(e.value) and "shoal up" in str(e.value)
    assert config(auth="none").require_secrets() == missing  # open on purpose: what runs open


def test_both_secrets_set_start_with_nothing_open(no_secrets):
    no_secrets.setenv("MY_TOKEN", "t" * 32)
    no_secrets.setenv("MY_KEY", "k" * 32)
    cfg = config(auth={"token_env": "MY_TOKEN", "cluster_key_env": "MY_KEY"})
    assert cfg.require_secrets() == []
    assert (cfg.token(), cfg.cluster_key()) == ("t" * 32, b"k" * 32)


def test_no_gossip_key_is_derived_from_the_cluster_name():
    # Without a key the MAC key is one public constant, the same for every cluster name:
    # nothing pretends that the (public) name is a secret.
    assert derive_key(None, "shoal-local") == derive_key(None, "other") == derive_key(None)
    assert derive_key(b"k", "shoal-local") == derive_key(b"k", "other") != derive_key(None)
