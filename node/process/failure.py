"""How a failed attempt becomes the video record's error: fail now or retry, and what users see.

This is the one place where an attempt's exception becomes public: the record's ``error``
(``{code, message}``) is what ``GET /v1/videos/<id>`` shows to anyone who may read the video.

==========================  =====================  ==========  ==============================
exception                   code                   outcome     public message
==========================  =====================  ==========  ==============================
UndecodableInput            ``undecodable_input``  `failed`    "input cannot be decoded: <reason>"
MediaLimitExceeded          ``media_limit``        `failed`    the reason, naming the limit
TranscodeError              ``transcode_error``    retry       "transcoding failed: <reason>"
storage.StorageError        ``storage_error``      retry       "storage error (<class>); will retry"
OSError                     ``io_error``           retry       "local I/O error (<strerror>)"
==========================  =====================  ==========  ==============================

Fail-now failures burn no retry: the user's bytes will not change. Every message goes through
``public_message``: one line, at most ``MESSAGE_LIMIT`` characters, no traceback, no local
path or URL, no Python exception name, no ffmpeg stderr (``TranscodeError.stderr_tail`` and ``str(OSError)`` go to the
log line only). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import storage

from node.process.errors import MediaLimitExceeded, TranscodeError, UndecodableInput

MESSAGE_LIMIT = 300  # characters of a public error message
_TRACEBACK = re.compile(r"Traceback \(most recent call last\).*", re.S)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S*")
_EXCEPTION = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b|"
                        r"\b(?:KeyboardInterrupt|StopIteration|Cancelled|BaseExceptionGroup)\b")
_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?/(?:[^\s'\"`,;:()\[\]{}<>]+/?)+")


@dataclass(frozen=True)
class Failure:
    code: str
    message: str  # public: safe to show to anyone who may read the video
    retry: bool  # False: the video becomes `failed` now


def classify(err: BaseException) -> Failure:
    """What ``err``, raised by an attempt, does to the video (see the module's table)."""
    if isinstance(err, UndecodableInput):
        return Failure("undecodable_input", public_message(f"input cannot be decoded: {err.reason}"), False)
    if isinstance(err, MediaLimitExceeded):
        return Failure("media_limit", public_message(err.reason), False)
    if isinstance(err, TranscodeError):
        return Failure("transcode_error", public_message(f"transcoding failed: {err.reason}"), True)
    if isinstance(err, storage.StorageError):
        return Failure("storage_error", f"storage error ({type(err).__name__}); will retry", True)
    if isinstance(err, OSError):
        return Failure("io_error", public_message(f"local I/O error ({err.strerror or type(err).__name__})"), True)
    raise TypeError(f"not an attempt failure: {type(err).__name__}")


def public_message(text: str) -> str:
    """``text`` made safe to publish: no traceback, no path or URL, no exception name, one
    line, bounded.  Also applied when a record is shown (node.http.routes_videos), so records
    written by an older version are shown clean too."""
    text = _TRACEBACK.sub("", text)
    text = _EXCEPTION.sub("<error>", text)
    text = _URL.sub("<url>", text)
    text = _PATH.sub("<path>", text)
    text = " ".join(text.split())
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT - 3].rstrip() + "..."
    return text or "unknown error"
