"""Pure checks of the attack suite: no sockets, no clock.

* :func:`split_responses` reads the HTTP/1.1 answers a raw socket received, in order, so a case can
  count them (a smuggled request shows up as a second answer).
* :func:`error_shape` says whether a body is the contract's ``{"error": {"code", "message"}}``.
* :func:`leaks` names what a body gives away: traceback text, a local path, a Python exception name.
* :func:`hop_header` signs a node-to-node hop as the nodes do (``X-Shoal-Hop``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

HOP_HEADER = "X-Shoal-Hop"

# Python exception names: ValueError, KeyError, OSError, FileNotFoundError, botocore's ClientError, ...
_EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b|\b(?:KeyError|StopIteration|"
                             r"CancelledError|Cancelled|BaseExceptionGroup|ExceptionGroup)\b")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
_LOCAL_PATH = re.compile(r"(?<![A-Za-z0-9.:])/(?:tmp|root|home|var|etc|proc|usr|work)/")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer read off a raw socket."""

    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes


@dataclass
class Stream:
    """Everything a raw connection received: the answers, and how it ended."""

    answers: list[Answer] = field(default_factory=list)
    closed: bool = False  # the server closed (EOF or reset) before our read timeout
    garbage: bytes = b""  # bytes after the last answer that are not an HTTP answer

    @property
    def dropped(self) -> bool:
        """Closed without a single answer."""
        return self.closed and not self.answers


def split_responses(data: bytes, *, head_request: bool = False) -> tuple[list[Answer], bytes]:
    """The complete HTTP/1.x answers at the start of ``data``, and the bytes left over.

    Bodies are framed by ``Content-Length`` (or chunked); an answer without either runs to the end
    of ``data``.  ``head_request``: answers carry no body whatever Content-Length says.
    """
    out: list[Answer] = []
    rest = data
    while rest.startswith(b"HTTP/"):
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = rest[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            break
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        body_at = end + 4
        if head_request or status in (204, 304) or 100 <= status < 200:
            body, rest = b"", rest[body_at:]
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"])
            except ValueError:
                break
            if len(rest) - body_at < n:
                break  # incomplete
            body, rest = rest[body_at:body_at + n], rest[body_at + n:]
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            got = _dechunk(rest[body_at:])
            if got is None:
                break
            body, used = got
            rest = rest[body_at + used:]
        else:
            body, rest = rest[body_at:], b""
        out.append(Answer(status, headers, body))
    return out, rest


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    body, i = b"", 0
    while True:
        eol = data.find(b"\r\n", i)
        if eol < 0:
            return None
        try:
            size = int(data[i:eol].split(b";")[0], 16)
        except ValueError:
            return None
        i = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", i - 2)
            return (body, end + 4) if end >= 0 else None
        if len(data) < i + size + 2:
            return None
        body += data[i:i + size]
        i += size + 2


def error_shape(body: bytes) -> tuple[str, str] | None:
    """``(code, message)`` when ``body`` is the contract's error document, else None."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None
    code, message = err.get("code"), err.get("message")
    if not (isinstance(code, str) and re.fullmatch(r"[a-z][a-z0-9_]*", code) and isinstance(message, str)):
        return None
    return code, message


def leaks(body: bytes | str, *, local_paths: tuple[str, ...] = ()) -> list[str]:
    """What ``body`` gives away, as short descriptions (empty when nothing)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    found = []
    if m := _TRACEBACK.search(text):
        found.append(f"traceback text {m.group(0)!r}")
    for p in local_paths:
        if p and p in text:
            found.append(f"local path {p!r}")
    if m := _LOCAL_PATH.search(text):
        found.append(f"local path {text[m.start():m.start() + 40]!r}")
    if m := _EXCEPTION_NAME.search(text):
        found.append(f"exception name {m.group(0)!r}")
    return found


def hop_signature(key: bytes, ts: int, method: str, path: str) -> str:
    """hex HMAC-SHA256(cluster key, ``ts\\nMETHOD\\npath``)."""
    msg = f"{ts}\n{method}\n{path}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def hop_header(key: bytes, ts: int, method: str, path: str) -> str:
    """The value of ``X-Shoal-Hop`` for a request: ``<unix_ts>.<hex hmac>``."""
    return f"{ts}.{hop_signature(key, ts, method, path)}"
