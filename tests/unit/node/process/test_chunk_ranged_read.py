"""A chunk reads only its own time range of the source: ffmpeg's input seeking over HTTP turns
into ranged GETs (the container index, then the bytes of the range), never the whole file.

Given a 60 s source served over HTTP on 127.0.0.1 by a server that counts the bytes it sends
(as a presigned S3 URL is, from the storage server), when one 4 s chunk in the middle is
encoded from its URL, then the server sent well under the whole file, and the chunk is right.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
from pathlib import Path

import trio

from media import make_video
from node.config import Processing, Rendition
from node.process.chunk_encode import encode_chunk, plan_video
from node.process.probe import probe

RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class CountingHandler(http.server.BaseHTTPRequestHandler):
    path_on_disk: Path
    sent: list[int]

    def setup(self) -> None:
        # small socket buffers, so what is counted as sent is close to what ffmpeg read (the
        # kernel would otherwise take megabytes of a response ffmpeg then drops)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        data = self.path_on_disk.read_bytes()
        m = RANGE.fullmatch(self.headers.get("Range", ""))
        start, end = (int(m.group(1)), int(m.group(2) or len(data) - 1)) if m else (0, len(data) - 1)
        body = data[start:end + 1]
        self.send_response(206 if m else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        sent = 0
        try:
            for i in range(0, len(body), 16 * 1024):  # count what the client took, 16 KiB at a time
                self.wfile.write(body[i:i + 16 * 1024])
                sent += len(body[i:i + 16 * 1024])
        except (BrokenPipeError, ConnectionResetError):  # ffmpeg drops a read it no longer needs
            pass
        self.sent.append(sent)

    def log_message(self, *args) -> None:
        pass


def test_a_middle_chunk_reads_a_small_part_of_the_source(tmp_path):
    src = make_video(tmp_path / "src.mp4", seconds=60, width=320, height=180, fps=25)
    processing = Processing(chunked=True, chunk_segments=2, segment_seconds=2, preset="ultrafast")
    plan = plan_video(probe(src), (Rendition("90p", 90, 100, 32),), processing, made_by_epoch=1)
    chunk = plan.chunks[len(plan.chunks) // 2]
    handler = type("H", (CountingHandler,), {"path_on_disk": src, "sent": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/source"
        out = trio.run(lambda: encode_chunk(url, tmp_path / "out", plan, chunk))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    size = src.stat().st_size
    assert len(out.durations) == chunk.segments and out.first_segment == chunk.first_segment
    # ranged reads only: the server may have started long responses that ffmpeg cut short, but
    # what it sent in all is a fraction of the file (measured: see the print with pytest -s)
    print(f"chunk {chunk.index} of {len(plan.chunks)}: {sum(handler.sent)} of {size} bytes "
          f"in {len(handler.sent)} requests")
    assert sum(handler.sent) < size / 3  # measured: 0.97 MB of 5.5 MB for 4 s of 60 s
