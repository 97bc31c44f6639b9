"""bench/lab/paths.py's pure helpers: percentiles, lab/local ratios and the "within 20%" verdict,
the playlist URI reader and the alternating side order."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("bench_lab_paths", REPO / "bench" / "lab" / "paths.py")
paths = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = paths  # its dataclasses look their module up by name
_spec.loader.exec_module(paths)


def test_percentile_interpolates_between_closest_ranks():
    s = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert paths.percentile(s, 0) == 1.0
    assert paths.percentile(s, 100) == 4.0
    assert paths.percentile(s, 50) == 2.5
    assert math.isclose(paths.percentile(list(range(101)), 95), 95.0)
    assert math.isclose(paths.percentile([1.0, 2.0], 99), 1.99)
    assert paths.percentile([7.0], 99) == 7.0
    assert math.isnan(paths.percentile([], 50))


def test_ratio_is_lab_over_local_and_nan_without_a_base():
    assert paths.ratio(12.0, 10.0) == 1.2
    assert math.isnan(paths.ratio(1.0, 0.0))
    assert math.isnan(paths.ratio(float("nan"), 1.0))


def test_within_is_the_symmetric_band_edges_included():
    assert paths.within(1.20) and paths.within(0.80) and paths.within(1.0)
    assert not paths.within(1.2001) and not paths.within(0.7999)
    assert paths.within(float("nan")) is None


def test_verdict_names_the_slower_side_by_direction():
    assert paths.verdict(1.1, higher_is_better=False) == "yes"
    assert paths.verdict(1.5, higher_is_better=False) == "no: lab slower"  # a time: lab larger
    assert paths.verdict(0.5, higher_is_better=False) == "no: lab faster"
    assert paths.verdict(0.5, higher_is_better=True) == "no: lab slower"  # a rate: lab smaller
    assert paths.verdict(1.5, higher_is_better=True) == "no: lab faster"
    assert paths.verdict(float("nan"), higher_is_better=True) == "n/a"


def test_hls_uris_reads_lines_and_uri_attributes():
    master = ('#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="audio",URI="audio/index.m3u8"\n'
              '#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\n360p/index.m3u8\n\n')
    assert paths.hls_uris(master) == ["audio/index.m3u8", "360p/index.m3u8"]
    media = "#EXTM3U\n#EXTINF:2.0,\nseg_00000.ts\n#EXTINF:2.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n"
    assert paths.hls_uris(media) == ["seg_00000.ts", "seg_00001.ts"]


def test_alternate_reverses_every_other_round():
    assert paths.alternate(1) == ["local", "lab"]
    assert paths.alternate(2) == ["local", "lab", "lab", "local"]
    assert paths.alternate(3) == ["local", "lab", "lab", "local", "local", "lab"]


def test_a_pass_counts_every_get_and_samples_only_segments():
    p = paths.Pass()
    p.fetched(0.01, b"#EXTM3U\n")  # a playlist: counted, not a latency sample
    p.fetched(0.02, b"x" * 10, hop=True)
    p.fetched(0.03, None, hop=False)  # failed: an error, no bytes, no sample
    assert (p.gets, p.errors, p.nbytes) == (3, 1, 18)
    assert [(s.seconds, s.nbytes, s.hop) for s in p.segments] == [(0.02, 10, True)]
