"""node.peer_auth: the cluster-key proof on node-to-node requests.  Pure, clock injected."""

from __future__ import annotations

import pytest

from node import peer_auth
from node.peer_auth import BadProof, MissingProof

KEY = b"k" * 32
PATH = "/v1/internal/objects/aaaaaaaaaaaaaaaaaaaaaaaaaa/out/3/master.m3u8"
T = 1_796_000_000.0


def test_a_signed_request_verifies_within_the_window_either_side():
    header = peer_auth.sign(KEY, "GET", PATH, T)
    assert header.startswith(f"{int(T)}.") and len(header.split(".")[1]) == 64
    for now in (T, T + 30, T - 30, T + 0.5):
        peer_auth.verify(KEY, header, "GET", PATH, now)  # returns: accepted


@pytest.mark.parametrize("header,method,path,now,error", [
    (None, "GET", PATH, T, MissingProof),
    ("", "GET", PATH, T, MissingProof),
    ("garbage", "GET", PATH, T, BadProof),
    (f"{int(T)}.{'0' * 64}", "GET", PATH, T, BadProof),  # a MAC of nothing
    ("SIGNED", "GET", PATH, T + 31, BadProof),  # too late (a replay)
    ("SIGNED", "GET", PATH, T - 31, BadProof),  # from the future
    ("SIGNED", "HEAD", PATH, T, BadProof),  # another method
    ("SIGNED", "GET", PATH.replace("/3/", "/4/"), T, BadProof),  # another path
    ("OTHER_KEY", "GET", PATH, T, BadProof),
    ("SIGNED" + "0", "GET", PATH, T, BadProof),
])
def test_refused_proofs(header, method, path, now, error):
    if header == "SIGNED" or (header or "").startswith("SIGNED"):
        header = peer_auth.sign(KEY, "GET", PATH, T) + header[6:]
    elif header == "OTHER_KEY":
        header = peer_auth.sign(b"another key", "GET", PATH, T)
    with pytest.raises(error):
        peer_auth.verify(KEY, header, method, path, now)


def test_a_cluster_without_a_key_needs_no_proof():
    assert not peer_auth.needs_proof(None) and not peer_auth.needs_proof(b"")
    assert peer_auth.needs_proof(KEY)


def test_check_verifies_only_where_the_cluster_has_a_key():
    # given a keyed cluster, when a request carries no proof or a wrong one, then it is refused
    with pytest.raises(peer_auth.MissingProof):
        peer_auth.check(b"k", None, "GET", "/v1/internal/x", 1000.0)
    with pytest.raises(peer_auth.BadProof):
        peer_auth.check(b"k", peer_auth.sign(b"other", "GET", "/v1/internal/x", 1000.0), "GET",
                        "/v1/internal/x", 1000.0)
    # and a right one passes; under `auth: none` (no key) nothing is asked
    peer_auth.check(b"k", peer_auth.sign(b"k", "GET", "/v1/internal/x", 1000.0), "GET", "/v1/internal/x", 1000.0)
    peer_auth.check(None, None, "GET", "/v1/internal/x", 1000.0)
