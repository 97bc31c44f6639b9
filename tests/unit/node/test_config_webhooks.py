"""The `webhooks:` section of cluster.yml (node/config.py): off by default, checked values,
and URLs without their signing key refuse to start, even under `auth: none`."""

from __future__ import annotations

import pytest

from node.config import Config, ConfigError, SecretsMissing, WebhooksConfig, check_secrets

NODES = [{"id": "n1", "host": "127.0.0.1", "http_port": 8001, "gossip_port": 7001}]


def config(**raw) -> Config:
    return Config.from_dict({"nodes": NODES, **raw})


def test_off_by_default_and_parsed_when_given():
    assert config().webhooks == WebhooksConfig() and config().webhooks.urls == ()
    cfg = config(webhooks={"urls": ["https://app.example/hooks", "http://127.0.0.1:9000/h?x=1"],
                           "timeout": 3, "max_attempts": 4, "secret_env": "MY_HOOK_KEY"})
    assert cfg.webhooks.urls == ("https://app.example/hooks", "http://127.0.0.1:9000/h?x=1")
    assert (cfg.webhooks.timeout, cfg.webhooks.max_attempts, cfg.webhooks.secret_env) == (3.0, 4, "MY_HOOK_KEY")


@pytest.mark.parametrize("section, message", [
    ({"urls": "https://app.example/hooks"}, "webhooks.urls: expected a list"),
    ({"urls": ["ftp://app.example/x"]}, "is not an http(s) URL"),
    ({"urls": ["https://"]}, "is not an http(s) URL"),
    ({"urls": [f"http://h{i}.example/" for i in range(17)]}, "length <= 16"),
    ({"timeout": "fast"}, "webhooks.timeout: expected a number"),
    ({"backoff_max": 0}, "webhooks.backoff_max: expected a number > 0"),
    ({"max_attempts": 0}, "webhooks.max_attempts: expected a whole number >= 1"),
    ({"concurrency": True}, "webhooks.concurrency: expected a whole number"),
    ({"secret": "inline"}, "unknown key 'secret'"),
])
def test_bad_values_are_refused_with_their_key(section, message):
    with pytest.raises(ConfigError) as e:
        config(webhooks=section)
    assert message in str(e.value)


def test_urls_need_their_signing_key_even_under_auth_none(monkeypatch):
    monkeypatch.delenv("SHOAL_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("SHOAL_TOKEN", "t")
    monkeypatch.setenv("SHOAL_CLUSTER_KEY", "k")
    hooked = {"webhooks": {"urls": ["http://127.0.0.1:9/h"]}}
    for raw in (hooked, {**hooked, "auth": "none"}):
        with pytest.raises(SecretsMissing) as e:
            check_secrets(config(**raw), "n1")
        assert "$SHOAL_WEBHOOK_SECRET not set" in str(e.value)
    check_secrets(config(), "n1")  # no URLs: no key needed
    monkeypatch.setenv("SHOAL_WEBHOOK_SECRET", "s3cret")
    check_secrets(config(**hooked), "n1")
    assert config(**hooked).webhooks.secret() == b"s3cret"
