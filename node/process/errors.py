"""The media exception tree (node.process re-exports it)::

    MediaError                   base of everything below
    ├── UndecodableInput         the user's file is not a video we can read: `failed`, no retry
    ├── MediaLimitExceeded       the user's file is over a media limit (config ``media:``):
    │                            `failed`, no retry, code ``media_limit``
    └── TranscodeError           ffmpeg failed or wrote something wrong: retry with backoff

ffmpeg, PyAV and OSError failures become these in two places only: ``node.process.probe``
(``probe``: PyAV) and node/process/ffmpeg.py (``transcode``: the ffmpeg process and its output).
How they become the record's public error is decided in one place: node/process/failure.py.
``trio.Cancelled`` is never caught.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of the media errors."""


class UndecodableInput(MediaError):
    """The input is not a video we can decode. The user's fault: do not retry.

    ``reason`` is a sentence for the user (it ends up in the video record).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MediaLimitExceeded(MediaError):
    """The input is over a media limit. The user's file: do not retry.

    ``limit`` is the config key (e.g. ``"max_duration_s"``); ``reason`` a sentence for the user
    naming the limit and its value, e.g. "duration 36001 s is over media.max_duration_s (21600 s)".
    """

    def __init__(self, limit: str, reason: str):
        super().__init__(reason)
        self.limit = limit
        self.reason = reason


class TranscodeError(MediaError):
    """ffmpeg failed, or its output is wrong. Infrastructure: retry with backoff.

    ``stderr_tail`` is for the log only: it may hold local paths, never shown to users.
    """

    def __init__(self, reason: str, stderr_tail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        if not self.stderr_tail:
            return self.reason
        last = self.stderr_tail.strip().splitlines()[-1:] or [""]
        return f"{self.reason}: {last[0]}"
