"""The datagram transport: the small interface the runtime sends and receives through.

``UdpTransport`` is the real one (a trio UDP socket); tests subclass or replace it (a transport
that loses every datagram it sends, for instance).  The simulator (``sim.py``) needs none: it
delivers the core's ``Send`` actions itself.
"""

from __future__ import annotations

import trio


class UdpTransport:
    """Datagrams over a trio UDP socket.  The interface a test transport implements."""

    def __init__(self) -> None:
        self._sock: trio.socket.SocketType | None = None

    async def bind(self, host: str, port: int) -> None:
        self._sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await self._sock.bind((host, port))

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        await self._sock.sendto(data, addr)

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        data, addr = await self._sock.recvfrom(65536)
        return data, (addr[0], addr[1])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
