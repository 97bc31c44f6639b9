"""The gateway's pump moves every byte, in order, both ways, and passes a half-close on.

Real sockets on this machine (TCP on 127.0.0.1 to a Unix socket, as in the gateway), no weed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading

from storage import s3_gateway

SIZE = 24 << 20  # many buffer fills


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def drain(sock: socket.socket, out: dict, key: str) -> None:
    h, n = hashlib.sha256(), 0
    while chunk := sock.recv(1 << 16):
        h.update(chunk)
        n += len(chunk)
    out[key] = (n, h.hexdigest())


def test_pump_moves_every_byte_both_ways_and_passes_the_half_close():
    client, gw_client = tcp_pair()
    gw_upstream, weed = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    up = os.urandom(1 << 20) * (SIZE >> 20) + b"tail-up"
    down = os.urandom(1 << 20) * (SIZE >> 20) + b"tail-down"
    got: dict = {}
    pumps = [threading.Thread(target=s3_gateway._pump, args=(gw_client, gw_upstream)),
             threading.Thread(target=s3_gateway._pump, args=(gw_upstream, gw_client))]
    readers = [threading.Thread(target=drain, args=(weed, got, "up")),
               threading.Thread(target=drain, args=(client, got, "down"))]
    try:
        for t in pumps + readers:
            t.start()
        client.sendall(up)
        client.shutdown(socket.SHUT_WR)  # the request is complete: weed must see EOF
        readers[0].join(30)
        assert got.get("up") == (len(up), hashlib.sha256(up).hexdigest())
        weed.sendall(down)  # the answer after the half-close still flows back
        weed.shutdown(socket.SHUT_WR)
        readers[1].join(30)
        assert got.get("down") == (len(down), hashlib.sha256(down).hexdigest())
        for t in pumps:
            t.join(30)
            assert not t.is_alive()
    finally:
        for s in (client, gw_client, gw_upstream, weed):
            s.close()


def test_pump_ends_when_the_far_side_resets():
    """weed dying mid-answer: the pump stops and the client sees the connection end, no hang."""
    client, gw_client = tcp_pair()
    gw_upstream, weed = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pumps = [threading.Thread(target=s3_gateway._pump, args=(gw_client, gw_upstream)),
             threading.Thread(target=s3_gateway._pump, args=(gw_upstream, gw_client))]
    try:
        for t in pumps:
            t.start()
        weed.sendall(b"HTTP/1.1 200 OK\r\n")
        weed.close()  # gone without a word more
        client.settimeout(10)
        assert client.recv(100) == b"HTTP/1.1 200 OK\r\n"
        assert client.recv(100) == b""
        client.close()
        for t in pumps:
            t.join(10)
            assert not t.is_alive()
    finally:
        for s in (client, gw_client, gw_upstream):
            s.close()
