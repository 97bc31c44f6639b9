"""The launcher turns a failure to secure the embedded S3 server into a LaunchError (no traceback)."""

from __future__ import annotations

import yaml
import pytest

from cli import LaunchError, Launcher
from harness import pick_ports
from storage import embedded


def test_missing_openssl_is_a_clear_launch_error(tmp_path, monkeypatch):
    http_port, gossip_port, s3_port = pick_ports(3)
    cfg = tmp_path / "cluster.yml"
    cfg.write_text(yaml.safe_dump({
        "state_dir": "st", "storage": {"endpoint": "embedded", "embedded_port": s3_port},
        "nodes": [{"id": "n1", "host": "127.0.0.1", "http_port": http_port, "gossip_port": gossip_port}]}))
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    launch = Launcher(cfg)
    with pytest.raises(LaunchError, match="embedded S3 server: .*openssl"):
        launch.start_storage()
    assert launch.pid("storage") is None
