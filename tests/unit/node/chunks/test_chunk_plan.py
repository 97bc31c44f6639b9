"""The chunk plan: cuts on the segment grid, short videos one chunk, settings fixed and stored."""

from __future__ import annotations

import pytest

from node.chunks.plan import PLAN_FORMAT, ChunkRange, Plan, PlanError, cut, make_plan, segment_count

RUNGS = [{"name": "144p", "width": 256, "height": 144, "video_kbps": 200, "audio_kbps": 64},
         {"name": "240p", "width": 426, "height": 240, "video_kbps": 400, "audio_kbps": 96}]


def spans(chunks):
    return [(c.start, round(c.duration, 6), c.first_segment, c.segments) for c in chunks]


@pytest.mark.parametrize("duration, seg, per, expected", [
    # short videos: one chunk, whatever the length of a chunk
    (4.0, 2, 3, [(0.0, 4.0, 0, 2)]),
    (9.0, 2, 3, [(0.0, 6, 0, 3), (6.0, 3.0, 3, 2)]),  # 5 > 1.5 * 3
    (8.0, 2, 3, [(0.0, 8.0, 0, 4)]),  # 4 segments <= 1.5 chunks: one chunk
    (24.0, 2, 3, [(0.0, 6, 0, 3), (6.0, 6, 3, 3), (12.0, 6, 6, 3), (18.0, 6, 9, 3)]),
    # a tail of >= half a chunk is a chunk of its own
    (22.0, 2, 3, [(0.0, 6, 0, 3), (6.0, 6, 3, 3), (12.0, 6, 6, 3), (18.0, 4, 9, 2)]),
    # a tail under half a chunk joins the chunk before
    (19.5, 2, 3, [(0.0, 6, 0, 3), (6.0, 6, 3, 3), (12.0, 7.5, 6, 4)]),
    # a duration a hair over the grid line adds no segment
    (24.0000001, 2, 3, [(0.0, 6, 0, 3), (6.0, 6, 3, 3), (12.0, 6, 6, 3), (18.0, 6.0, 9, 3)]),
])
def test_cuts_fall_on_the_segment_grid(duration, seg, per, expected):
    assert spans(cut(duration, seg, per)) == expected


@pytest.mark.parametrize("duration", [0.5, 3.9, 7.0, 29.97, 61.3, 600.0, 7200.04])
@pytest.mark.parametrize("seg, per", [(2, 3), (2, 15), (4, 5), (6, 1)])
def test_chunks_tile_the_video_with_whole_segments(duration, seg, per):
    chunks = cut(duration, seg, per)
    # then no gap, no overlap, and the last chunk ends at the probed duration
    assert chunks[0].start == 0.0
    for a, b in zip(chunks, chunks[1:]):
        assert b.start == pytest.approx(a.end)
        assert a.segments == per and a.duration == per * seg  # every chunk but the last: whole
        assert b.first_segment == a.first_segment + a.segments
        assert b.start == b.first_segment * seg  # on the grid
    assert chunks[-1].end == pytest.approx(duration)
    assert sum(c.segments for c in chunks) == segment_count(duration, seg)
    if len(chunks) > 1:
        assert chunks[-1].segments >= per / 2  # a tail never shorter than half a chunk
    else:
        assert segment_count(duration, seg) <= 1.5 * per


def test_keyframes_are_the_grid_relative_to_the_chunk():
    c = ChunkRange(index=2, start=12.0, duration=5.0, first_segment=6, segments=3)
    assert c.keyframe_times(2) == [0, 2, 4]
    assert c.end == 17.0


@pytest.mark.parametrize("duration, seg", [(0, 2), (-1, 2), (10, 0)])
def test_impossible_numbers_are_refused(duration, seg):
    with pytest.raises(PlanError):
        cut(duration, seg, 3)


def test_chunking_off_makes_one_chunk_of_any_length():
    plan = make_plan(duration=600.0, segment_seconds=2, chunk_segments=3, chunked=False,
                     renditions=RUNGS, has_audio=True, preset="veryfast")
    assert plan.single and plan.chunks[0].segments == 300


def test_the_plan_fixes_every_setting_and_survives_storage():
    # given a plan of a 24 s source with audio
    plan = make_plan(duration=24.0, segment_seconds=2, chunk_segments=3, chunked=True,
                     renditions=RUNGS, has_audio=True, preset="veryfast",
                     source={"video_stream": 0, "audio_stream": 1, "container": "mov"},
                     made_by_epoch=3)
    # then the encoder is deterministic (one thread) and audio takes the best rung's rate
    assert plan.encoder.threads == 1 and plan.encoder.preset == "veryfast"
    assert plan.audio_kbps == 96 and len(plan.chunks) == 4 and plan.segment_count == 12
    # and it reads back from its stored form unchanged
    assert Plan.from_doc(plan.to_doc()) == plan
    # and a segment number names the chunk that writes it
    assert [plan.chunk_of_segment(n) for n in (0, 2, 3, 11)] == [0, 0, 1, 3]
    with pytest.raises(ValueError):
        plan.chunk_of_segment(12)


def test_a_plan_of_a_newer_format_or_malformed_is_refused():
    doc = make_plan(duration=24.0, segment_seconds=2, chunk_segments=3, chunked=True,
                    renditions=RUNGS, has_audio=False, preset="veryfast").to_doc()
    with pytest.raises(PlanError, match="newer"):
        Plan.from_doc(dict(doc, format=PLAN_FORMAT + 1))
    with pytest.raises(PlanError, match="malformed"):
        Plan.from_doc({k: v for k, v in doc.items() if k != "chunks"})
