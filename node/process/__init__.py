"""Processing: the worker that claims videos by lease, and the media it runs (probe, ffmpeg, ladder).

What it offers:
- ``Worker``: claims pending videos, transcodes them, commits ``ready`` by CAS.
- the media pipeline: ``probe`` -> ``plan_ladder`` -> ``transcode`` (one ffmpeg run), the master
  playlist, and the error tree ``MediaError`` > ``UndecodableInput`` | ``TranscodeError``.

Import rule: ``storage``, ``node.records``, ``node.log``/``node.config``, PyAV and ffmpeg; never
``node.upload``, ``node.play`` or ``node.http``, and never an HTTP library.
"""

from node.process.errors import MediaError, TranscodeError, UndecodableInput
from node.process.ffmpeg import ProgressParser, check_aligned, ffmpeg_command, ffmpeg_exe, transcode
from node.process.ladder import RenditionPlan, plan_ladder
from node.process.master_playlist import master_playlist
from node.process.probe import Probe, probe
from node.process.probe_isolated import probe_isolated
from node.process.worker import Worker, bucket_missing

__all__ = [
    "MediaError", "UndecodableInput", "TranscodeError", "Probe", "probe", "probe_isolated",
    "plan_ladder", "RenditionPlan", "ffmpeg_command", "ffmpeg_exe", "master_playlist", "transcode",
    "check_aligned", "ProgressParser", "Worker", "bucket_missing",
]
