"""The checker: did every invariant hold? Pure: a history and a storage snapshot in, a report out.

Anomaly kinds (each names the video and the evidence):

    lost_upload          an acknowledged upload has no record, no source, or a source whose bytes differ
    idempotency_split    one logical upload was answered with two different video ids
    duplicate_video      two videos in storage carry the name of one logical upload (a retry made a second)
    ready_twice          the record's history says `ready` more than once
    double_commit        two different committed outputs were visible: the ready entry's epoch is not
                         `ready_epoch`, or one playlist path was served with different bytes
    premature_playlist   a playlist was served (200) before the video's ready commit (or it never committed)
    missing_segment      a served playlist named a segment or playlist that answered 404, or that is not
                         in storage where the ready record says (out/<ready_epoch>/, or for a chunked
                         video's segment its unit's committed epoch: layout.hls_object_key)
    state_regression     a status read that started after another had seen a terminal state saw another state
    wrong_outcome        a valid video `failed`, or an invalid one `ready`
    unsettled            an acknowledged video was not terminal within ``settle_bound`` s after the last fault
    orphan_multipart     a multipart upload under videos/ that no `uploading` record names (after GC)
    orphan_attempt       objects under out/<epoch>/ other than the ready epoch (after GC)
    chunk_not_committed  a ready chunked video's record names, for a unit, an epoch that is not the one
                         the unit's document committed (or the unit is not committed)
    orphan_chunk_attempt objects under chunks/<unit>/<epoch>/ of a terminal video other than the epoch its
                         ready record names for that unit (after GC): a stale epoch's outputs still listed
    membership_split     after every fault was healed, some node still did not see every node alive

The figures: operations by kind and result, faults by kind, uploads acknowledged, videos ready and
failed, and the time from the last fault to the last video settled.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from node.records import layout

__all__ = ["Snapshot", "Anomaly", "Report", "check", "ANOMALY_KINDS", "acked_uploads", "format_report"]

ANOMALY_KINDS = ("lost_upload", "idempotency_split", "duplicate_video", "ready_twice", "double_commit",
                 "premature_playlist", "missing_segment", "state_regression", "wrong_outcome",
                 "unsettled", "orphan_multipart", "orphan_attempt", "chunk_not_committed",
                 "orphan_chunk_attempt", "membership_split")
TERMINAL = ("ready", "failed", "deleted")
_OUT_RE = re.compile(r"^videos/([^/]+)/out/(\d+)/(.+)$")
_CHUNK_RE = re.compile(r"^videos/([^/]+)/chunks/([^/]+)/(\d+)/(.+)$")


@dataclass
class Snapshot:
    """What storage holds, read after the run (straight from S3, not through the nodes)."""
    records: dict[str, dict | None] = field(default_factory=dict)  # vid -> record.json (None: missing)
    sources: dict[str, tuple[int, str] | None] = field(default_factory=dict)  # vid -> (size, sha256)
    out_keys: dict[str, list[str]] = field(default_factory=dict)  # vid -> keys under videos/<vid>/out/
    multiparts: list[tuple[str, str, float]] = field(default_factory=list)  # (key, upload id, initiated)
    names: dict[str, list[str]] = field(default_factory=dict)  # filename -> vids holding it
    chunk_keys: dict[str, list[str]] = field(default_factory=dict)  # vid -> keys under videos/<vid>/chunks/
    units: dict[str, list[dict]] = field(default_factory=dict)  # vid -> unit documents (chunked videos)


@dataclass(frozen=True)
class Anomaly:
    kind: str
    video: str | None
    detail: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "video": self.video, "detail": self.detail}


@dataclass
class Report:
    anomalies: list[Anomaly]
    figures: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(a.kind for a in self.anomalies))


def acked_uploads(history: Iterable[dict]) -> dict[str, dict]:
    """vid -> the upload entry that acknowledged it (a 2xx naming it as uploaded)."""
    out: dict[str, dict] = {}
    for e in history:
        if e.get("op") == "upload" and e.get("result") == "ok" and e.get("video"):
            out[e["video"]] = e
    return out


def _ready_at(rec: dict | None) -> float | None:
    for h in (rec or {}).get("history") or []:
        if h.get("state") == "ready":
            return h.get("at")
    return None


def _terminal_at(rec: dict | None) -> float | None:
    for h in (rec or {}).get("history") or []:
        if h.get("state") in TERMINAL:
            return h.get("at")
    return None


def check(history: list[dict], snap: Snapshot, *, settle_bound: float = 120.0,
          check_playback_storage: bool = True) -> Report:
    """Every anomaly the history and the snapshot show. ``settle_bound``: seconds after the last fault."""
    anomalies: list[Anomaly] = []
    add = lambda kind, vid, detail: anomalies.append(Anomaly(kind, vid, detail))  # noqa: E731
    run = next((e for e in history if e.get("op") == "run"), {})
    acked = acked_uploads(history)
    faults = [e for e in history if e.get("op") == "fault"]
    last_fault = max((e.get("t1") or e["t0"] for e in faults), default=run.get("t0", 0.0))

    # -- uploads: acknowledged means durable with exact bytes; one logical upload, one video
    for e in history:
        if e.get("op") != "upload":
            continue
        ids = sorted(set(e.get("ids") or []))
        if len(ids) > 1 and e.get("kind") == "oneshot":
            add("idempotency_split", ids[0], f"upload {e.get('name')} (key {e.get('key')}) "
                f"was answered with ids {ids}")
        if e.get("kind") == "oneshot" and e.get("name"):
            holders = sorted(set(snap.names.get(e["name"], [])))
            if len(holders) > 1:
                add("duplicate_video", holders[0], f"upload {e['name']} exists as {holders}")
    for vid, e in acked.items():
        rec = snap.records.get(vid)
        src = snap.sources.get(vid)
        if rec is None:
            add("lost_upload", vid, f"acknowledged at {e.get('t1')} ({e.get('kind')}, {e.get('node')}) "
                "but storage has no record")
            continue
        if rec.get("state") == "deleted":
            continue
        if src is None:
            add("lost_upload", vid, f"acknowledged at {e.get('t1')} but videos/{vid}/source is missing "
                f"(record state {rec.get('state')})")
        elif src != (e.get("size"), e.get("sha256")):
            add("lost_upload", vid, f"source is {src[0]} bytes sha256 {src[1][:16]}, the upload sent "
                f"{e.get('size')} bytes sha256 {str(e.get('sha256'))[:16]}")

    # -- commits: one ready, naming the epoch whose outputs are playable
    for vid, rec in snap.records.items():
        if rec is None:
            continue
        readies = [h for h in rec.get("history") or [] if h.get("state") == "ready"]
        if len(readies) > 1:
            add("ready_twice", vid, "history has ready at " + ", ".join(
                f"{h.get('at')} (node {h.get('node')}, epoch {h.get('epoch')})" for h in readies))
        if readies and rec.get("state") == "ready" and readies[-1].get("epoch") != rec.get("ready_epoch"):
            add("double_commit", vid, f"ready entry names epoch {readies[-1].get('epoch')}, "
                f"the record ready_epoch {rec.get('ready_epoch')}")

    # -- playback: nothing before ready; everything named exists; one output per video
    served_bytes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in history:
        if e.get("op") != "playlist" or e.get("status") != 200:
            continue
        vid, path = e.get("video"), e.get("path")
        rec = snap.records.get(vid)
        ready_at = _ready_at(rec)
        if ready_at is None or e["t1"] < ready_at:
            add("premature_playlist", vid, f"{path} served by {e.get('node')} at {e.get('t1')}; "
                + (f"ready committed at {ready_at}" if ready_at is not None else "the video never committed ready"))
        if e.get("sha256"):
            served_bytes[(vid, path)].add(e["sha256"])
        base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        named = [(base + s["name"], s) for s in e.get("segments") or []] + \
                [(v["name"], v) for v in e.get("variants") or []]
        epoch = (rec or {}).get("ready_epoch")
        keys = set(snap.out_keys.get(vid, [])) | set(snap.chunk_keys.get(vid, []))
        for rel, s in named:
            if s.get("status") == 404:
                add("missing_segment", vid, f"{path} served by {e.get('node')} at {e.get('t1')} names {rel}, "
                    f"which answered 404 on {s.get('node')}")
            elif check_playback_storage and epoch is not None and vid in snap.out_keys \
                    and (want := layout.hls_object_key(vid, rec, rel)) not in keys:
                add("missing_segment", vid, f"{path} names {rel}, absent from {want} in storage")
    for (vid, path), digests in served_bytes.items():
        if len(digests) > 1:
            add("double_commit", vid, f"{path} was served with {len(digests)} different contents")

    # -- status reads never go back from a terminal state
    polls = sorted((e for e in history if e.get("op") == "poll" and e.get("status") == 200),
                   key=lambda e: e["t0"])
    seen_terminal: dict[str, tuple[float, str]] = {}
    for e in sorted(polls, key=lambda e: e.get("t1", e["t0"])):
        if e.get("state") in TERMINAL:
            seen_terminal.setdefault(e["video"], (e["t1"], e["state"]))
    for e in polls:
        first = seen_terminal.get(e["video"])
        if first and e["t0"] > first[0] and e.get("state") != first[1] and e.get("state") != "deleted":
            add("state_regression", e["video"], f"read {e.get('state')} on {e.get('node')} at {e['t0']} "
                f"after {first[1]} was read at {first[0]}")

    # -- liveness: every acknowledged video settled, the right way, within the bound
    settle_times = []
    for vid, e in acked.items():
        rec = snap.records.get(vid)
        if rec is None:
            continue
        state = rec.get("state")
        if state == "deleted":
            continue
        if state not in TERMINAL:
            add("unsettled", vid, f"still {state} (attempts {rec.get('attempts')}, lease {rec.get('lease')})")
            continue
        at = _terminal_at(rec)
        settle_times.append(max(0.0, (at or 0.0) - last_fault))
        if at is not None and at - last_fault > settle_bound:
            add("unsettled", vid, f"{state} only {at - last_fault:.1f} s after the last fault "
                f"(bound {settle_bound:.0f} s)")
        if e.get("valid") and state == "failed":
            add("wrong_outcome", vid, f"a valid video failed: {rec.get('error')}")
        if e.get("valid") is False and state == "ready":
            add("wrong_outcome", vid, "random bytes became ready")

    # -- garbage: after collection, nothing but the committed epoch and no open multipart upload
    for key, upload_id, initiated in snap.multiparts:
        parts = key.split("/")
        vid = parts[1] if len(parts) > 2 and parts[0] == "videos" else None
        rec = snap.records.get(vid) if vid else None
        up = (rec or {}).get("upload") or {}
        if rec is not None and rec.get("state") == "uploading" and up.get("upload_id") == upload_id:
            continue
        add("orphan_multipart", vid, f"{key} upload {upload_id[:24]} initiated {initiated} "
            f"(record state {(rec or {}).get('state')})")
    for vid, rec, matches in _settled_outputs(snap.out_keys, snap.records, _OUT_RE):
        stray = Counter(int(m.group(2)) for m in matches
                        if rec.get("state") != "ready" or int(m.group(2)) != rec.get("ready_epoch"))
        for epoch, n in sorted(stray.items()):
            add("orphan_attempt", vid, f"out/{epoch}/ holds {n} objects; the record is {rec.get('state')} "
                f"with ready_epoch {rec.get('ready_epoch')}")

    # -- chunks: the ready commit names committed unit epochs, and only those outputs remain
    for vid, rec in snap.records.items():
        named_units = ((rec or {}).get("segments_from") or {}).get("units") or {}
        if rec is None or rec.get("state") != "ready" or not named_units:
            continue
        docs = {d.get("unit"): d for d in snap.units.get(vid, [])}
        for unit, epoch in sorted(named_units.items()):
            d = docs.get(unit)
            committed = (d or {}).get("output", {}).get("epoch") if (d or {}).get("state") == "committed" else None
            if committed != epoch:
                add("chunk_not_committed", vid, f"the ready record names epoch {epoch} of unit {unit}; its "
                    f"document is {(d or {}).get('state', 'missing')} at epoch {committed}")
    for vid, rec, matches in _settled_outputs(snap.chunk_keys, snap.records, _CHUNK_RE):
        named_units = (rec.get("segments_from") or {}).get("units") or {}
        stray_units = Counter((m.group(2), int(m.group(3))) for m in matches
                              if rec.get("state") != "ready" or named_units.get(m.group(2)) != int(m.group(3)))
        for (unit, epoch), n in sorted(stray_units.items()):
            add("orphan_chunk_attempt", vid, f"chunks/{unit}/{epoch}/ holds {n} objects; the record is "
                f"{rec.get('state')} naming epoch {named_units.get(unit)} for that unit")

    # -- membership heals by itself once the faults end
    members = [e for e in history if e.get("op") == "members"]
    if members and not members[-1].get("converged"):
        views = members[-1].get("views") or {}
        add("membership_split", None, f"{members[-1].get('seconds')} s after the last fault: " + "; ".join(
            f"{n} sees " + ", ".join(f"{m} {s}" for m, s in sorted(v.items()) if s != "alive")
            for n, v in sorted(views.items()) if any(s != "alive" for s in v.values()) or not v))

    figures = _figures(history, snap, acked, faults, last_fault, settle_times)
    figures["anomalies"] = dict(Counter(a.kind for a in anomalies))
    return Report(anomalies, figures)


def _settled_outputs(keys_by_video: dict[str, list[str]], records: dict[str, dict | None],
                     pattern: re.Pattern[str]) -> Iterator[tuple[str, dict, list[re.Match[str]]]]:
    """``(vid, record, matches)`` for each video of ``keys_by_video`` whose record is ready or
    failed, in ``keys_by_video``'s order: its keys that ``pattern`` matches, in their order.  After
    garbage collection such a video keeps only the outputs its ready record names."""
    for vid, keys in keys_by_video.items():
        rec = records.get(vid)
        if rec is not None and rec.get("state") in ("ready", "failed"):
            yield vid, rec, [m for m in map(pattern.match, keys) if m]


def _figures(history: list[dict], snap: Snapshot, acked: dict[str, dict], faults: list[dict],
             last_fault: float, settle_times: list[float]) -> dict[str, Any]:
    ops = Counter()
    for e in history:
        if e.get("op") in ("upload", "poll", "playlist", "segment"):
            ops[f"{e['op']}:{e.get('result', e.get('status'))}"] += 1
    segments = sum(len(e.get("segments") or []) for e in history if e.get("op") == "playlist")
    states = Counter((snap.records.get(v) or {}).get("state", "missing") for v in acked)
    run = next((e for e in history if e.get("op") == "run"), {})
    return {
        "seed": run.get("seed"),
        "duration": run.get("duration"),
        "operations": dict(sorted(ops.items())),
        "segments_checked": segments,
        "faults": dict(Counter(e.get("kind") for e in faults)),
        "fault_errors": sum(1 for e in faults if e.get("error")),
        "uploads_acknowledged": len(acked),
        "uploads_acknowledged_valid": sum(1 for e in acked.values() if e.get("valid")),
        "videos": dict(states),
        "videos_ready_in_chunks": sum(1 for v in acked if (snap.records.get(v) or {}).get("state") == "ready"
                                      and (snap.records.get(v) or {}).get("segments_from")),
        "last_fault_to_all_settled": round(max(settle_times), 1) if settle_times else None,
        "membership_converged_after": next((e.get("seconds") for e in reversed(history)
                                            if e.get("op") == "members" and e.get("converged")), None),
    }


def format_report(report: Report, *, limit: int = 30) -> str:
    f = report.figures
    verdict = "PASS: no anomaly" if report.ok else f"FAIL: {len(report.anomalies)} anomalies"
    lines = [verdict,
             f"seed {f.get('seed')}, {f.get('duration')} s of workload",
             "operations: " + ", ".join(f"{k} {v}" for k, v in f["operations"].items()),
             f"segments checked: {f['segments_checked']}",
             "faults: " + (", ".join(f"{k} {v}" for k, v in f["faults"].items()) or "none")
             + (f" ({f['fault_errors']} with injection errors)" if f.get("fault_errors") else ""),
             f"uploads acknowledged: {f['uploads_acknowledged']} ({f['uploads_acknowledged_valid']} valid)",
             "videos: " + ", ".join(f"{k} {v}" for k, v in f["videos"].items()),
             f"last fault -> every video settled: {f['last_fault_to_all_settled']} s",
             f"last fault -> membership converged: {f.get('membership_converged_after')} s",
             "anomalies: " + (", ".join(f"{k} {v}" for k, v in report.by_kind().items()) or "none")]
    for a in report.anomalies[:limit]:
        lines.append(f"  {a.kind} {a.video}: {a.detail}")
    if len(report.anomalies) > limit:
        lines.append(f"  ... {len(report.anomalies) - limit} more")
    return "\n".join(lines)
