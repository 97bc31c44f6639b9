"""Processing: the worker that claims videos by lease, and the media it runs (probe, ffmpeg, ladder).

What it offers:
- ``Worker``: claims pending videos, transcodes them, commits ``ready`` by CAS; with
  ``processing.chunked`` it also coordinates a long video's chunks as its owner and encodes the
  units the ring gives this node (node/process/chunk_worker.py, chunk_encode.py,
  chunk_assemble.py; the pure rules in ``node.chunks``).
- the media pipeline: ``probe`` -> ``plan_ladder`` -> ``transcode`` (one ffmpeg run), the master
  playlist, and the error tree ``MediaError`` > ``UndecodableInput`` | ``MediaLimitExceeded`` |
  ``TranscodeError``; the media limits (``run_bounds``) and how a failure becomes public
  (``classify``, node/process/failure.py).

Import rule: ``storage``, ``node.records``, ``node.chunks``, ``node.log``/``node.config``, PyAV
and ffmpeg; never
``node.upload``, ``node.play`` or ``node.http``, and never an HTTP library.
"""

from node.process.errors import MediaError, MediaLimitExceeded, TranscodeError, UndecodableInput
from node.process.failure import Failure, classify, public_message
from node.process.ffmpeg import ProgressParser, check_aligned, ffmpeg_command, ffmpeg_exe, transcode
from node.process.ladder import RenditionPlan, plan_ladder
from node.process.limits import RunBounds, run_bounds
from node.process.master_playlist import master_playlist
from node.process.probe import Probe, probe
from node.process.probe_isolated import probe_isolated
from node.process.worker import Worker, bucket_missing

__all__ = [
    "MediaError", "UndecodableInput", "MediaLimitExceeded", "TranscodeError", "Failure", "classify",
    "public_message", "RunBounds", "run_bounds", "Probe", "probe", "probe_isolated",
    "plan_ladder", "RenditionPlan", "ffmpeg_command", "ffmpeg_exe", "master_playlist", "transcode",
    "check_aligned", "ProgressParser", "Worker", "bucket_missing",
]
