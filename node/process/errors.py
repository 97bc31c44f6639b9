"""The media exception tree (node.process re-exports it)::

    MediaError                   base of everything below
    ├── UndecodableInput         the user's file is not a video we can read: `failed`, no retry
    └── TranscodeError           ffmpeg failed or wrote something wrong: retry with backoff

ffmpeg, PyAV and OSError failures become these in two places only: ``node.process.probe``
(``probe``: PyAV) and node/process/ffmpeg.py (``transcode``: the ffmpeg process and its output).
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


class TranscodeError(MediaError):
    """ffmpeg failed, or its output is wrong. Infrastructure: retry with backoff."""

    def __init__(self, reason: str, stderr_tail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        if not self.stderr_tail:
            return self.reason
        last = self.stderr_tail.strip().splitlines()[-1:] or [""]
        return f"{self.reason}: {last[0]}"
