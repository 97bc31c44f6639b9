"""`shoal lab` refuses what it cannot do with `error: ...` and exit 1, before touching the
network: a bad lab name or subnet, `cut` without peers, `cap` without a rate, `heal` without a host."""

from __future__ import annotations

import pytest

from cli.main import main


@pytest.mark.parametrize("argv, words", [
    (["lab", "up", "--name", "TooLong"], "lab name 'TooLong': 1 to 4 lowercase letters or digits"),
    (["lab", "up", "--name", "q", "--subnet", "8.8.8.0/24"], "a private /24"),
    (["lab", "up", "--name", "q", "--hosts", "0"], "--hosts 0: from 1 to 9"),
    (["lab", "cut", "h1", "--name", "q"], "lab cut HOST --from A,B"),
    (["lab", "heal", "--name", "q"], "lab heal HOST"),
    (["lab", "cap", "h1", "--name", "q"], "lab cap HOST --rate KBIT"),
    (["lab", "cap", "h1", "--rate", "-5", "--name", "q"], "lab cap HOST --rate KBIT"),
    (["lab", "up", "--name", "q", "--with", "/nonexistent/with.yml"], "--with /nonexistent/with.yml: "),
])
def test_lab_refuses_with_the_reason(argv, words, tmp_path, capsys):
    code = main([*argv, "--dir", str(tmp_path / "lab")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and words in err, err
    assert not (tmp_path / "lab").exists()  # nothing was made


def test_lab_up_with_a_file_that_is_not_a_mapping_is_refused(tmp_path, capsys):
    (tmp_path / "with.yml").write_text("- processing\n")
    code = main(["lab", "up", "--name", "q", "--with", str(tmp_path / "with.yml"), "--dir", str(tmp_path / "lab")])
    err = capsys.readouterr().err
    assert code == 1 and "expected a mapping of cluster.yml settings" in err, err
    assert not (tmp_path / "lab").exists()


def test_node_run_needs_a_node(tmp_path, capsys):
    cfg = tmp_path / "cluster.yml"
    cfg.write_text("nodes: [{id: n1, host: 127.0.0.1, http_port: 1, gossip_port: 2}]\n")
    assert main(["node", "run", "--config", str(cfg)]) == 1
    assert "needs --node ID" in capsys.readouterr().err
