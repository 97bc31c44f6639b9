"""What one node measures: Prometheus metrics on the node's own registry.

:class:`NodeMetrics` holds a :class:`prometheus_client.CollectorRegistry` of its own (never the
process-wide default: several nodes may run in one test process) and every metric the node
records as things happen, each a typed field:

* HTTP: latency by route class and status class, body bytes in and out by route class
  (:meth:`NodeMetrics.request`, called once per request by both HTTP paths, node/http/edge.py);
* the request events counted before (``fast_lane_responses``, ``uploads_accepted`` ...:
  :class:`Events`, also shown by ``GET /v1/node`` as ``counters``);
* tus PATCH phases (:meth:`NodeMetrics.tus_patch`, the hook node.upload's TusUploads is given);
* transcode time per second of video (:meth:`NodeMetrics.transcoded`, the Worker's hook);
* storage request latency by operation (:meth:`NodeMetrics.storage`, the
  :data:`storage.Observer` handed to the store when it is opened).

What other parts already count (the segment cache, gossip membership, the worker, the node's
own state) is read at scrape time by collectors that call their ``statistics()``
(:class:`Reading`, registered by node/compose.py): nothing is copied on their hot paths.  The
process's RSS, CPU seconds and open files come from prometheus_client's ProcessCollector.

Invariant: every label value is from a fixed set (:data:`ROUTE_CLASSES`, :data:`STATUS_CLASSES`,
:data:`TUS_PHASES`, ``storage.OPERATIONS``, member states, gossip drop reasons), so the number of
series is bounded.  The recording methods look their labelled child up in a dict filled on first
use: ``.labels()`` runs once per series, never per request; nothing here makes a system call.

docs/operations.md lists every metric; tests/unit/node/test_metrics_doc.py checks the list
against :func:`describe` of a composed node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the format generate_latest writes

# How a request is classed for its latency (node/http/edge.py: route_class)
ROUTE_CLASSES = ("playback_hit", "playback_miss", "playback_hop", "internal_hop", "internal",
                 "upload_one_shot", "tus_patch", "tus_other", "api", "ops", "web", "other")
# status // 100 -> label; 0: no answer was sent (the client went away first)
STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
TUS_PHASES = ("lock", "receive", "drain", "commit")  # node/upload/tus_uploads.py, PatchInProgress.ms

# seconds: a cache hit is well under a millisecond, a big upload or a cold hop takes seconds
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0)
STORAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RATIO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # transcode s per video s

# the labels of every labelled family (a family shows them in its samples only once it has one)
LABELS: dict[str, tuple[str, ...]] = {
    "shoal_http_request_duration_seconds": ("route", "status"),
    "shoal_http_received_bytes": ("route",),
    "shoal_http_sent_bytes": ("route",),
    "shoal_tus_patch_phase_seconds": ("phase",),
    "shoal_storage_request_duration_seconds": ("operation", "outcome"),
    "shoal_gossip_dropped": ("reason",),
    "shoal_members": ("state",),
}


def status_class(status: int) -> str:
    """``"2xx"`` for 204; ``"none"`` for 0 (no answer) or anything outside 100..599."""
    return STATUS_CLASSES[status // 100] if 100 <= status < 600 else "none"


class Events:
    """Counters of request events, one field each (``shoal_<field>_total``).  The names are those
    ``GET /v1/node`` has always shown under ``counters``."""

    FIELDS: dict[str, str] = {
        "fast_lane_responses": "answers the fast lane gave, errors included",
        "hls_segments_served": "HLS segments answered to players (either path)",
        "hls_playlists_served": "HLS playlists answered to players (either path)",
        "posters_served": "poster images answered (either path)",
        "hops_served": "objects this node answered for another node's hop",
        "http_refused": "requests refused as malformed or ambiguously framed (400, connection closed)",
        "storage_unavailable_responses": "answers 503 because storage was out of reach",
        "storage_error_responses": "answers 502 because storage failed otherwise",
        "storage_reads": "playback reads that went to storage without the segment cache",
        "uploads_accepted": "one-shot uploads accepted (201)",
        "uploads_replayed": "one-shot uploads answered from an earlier Idempotency-Key",
        "upload_bytes": "bytes of accepted uploads (one-shot bodies and tus PATCHes)",
        "tus_uploads_created": "tus uploads created",
        "tus_patches": "tus PATCHes committed",
        "tus_terminated": "tus uploads terminated (DELETE)",
        "internal_requests_refused": "node-to-node requests refused for a missing or wrong proof",
    }

    def __init__(self, registry: CollectorRegistry) -> None:
        for name, help_ in self.FIELDS.items():
            setattr(self, name, Counter(f"shoal_{name}", help_, registry=registry))

    # typed fields (set above, one per FIELDS entry)
    fast_lane_responses: Counter
    hls_segments_served: Counter
    hls_playlists_served: Counter
    posters_served: Counter
    hops_served: Counter
    http_refused: Counter
    storage_unavailable_responses: Counter
    storage_error_responses: Counter
    storage_reads: Counter
    uploads_accepted: Counter
    uploads_replayed: Counter
    upload_bytes: Counter
    tus_uploads_created: Counter
    tus_patches: Counter
    tus_terminated: Counter
    internal_requests_refused: Counter

    def values(self) -> dict[str, int]:
        """Every counter by name (``GET /v1/node`` -> ``counters``); read, not on a hot path."""
        out = {}
        for name in self.FIELDS:
            for sample in getattr(self, name).collect()[0].samples:
                if sample.name.endswith("_total"):
                    out[name] = int(sample.value)
        return out


class NodeMetrics:
    """The metrics one node records as things happen, on its own registry; see the module doc."""

    def __init__(self, *, process: bool = True) -> None:
        """``process``: also export this process's RSS, CPU and open files (a node process does;
        a test holding several nodes in one process may leave them out)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "shoal_http_request_duration_seconds",
            "time from a request's head read to its answer sent, by route class and status class",
            LABELS["shoal_http_request_duration_seconds"], buckets=LATENCY_BUCKETS, registry=r)
        self.received_bytes = Counter("shoal_http_received_bytes", "request body bytes received, by route class",
                                      ["route"], registry=r)
        self.sent_bytes = Counter("shoal_http_sent_bytes", "response body bytes sent, by route class",
                                  ["route"], registry=r)
        self.events = Events(r)
        self.tus_phase_seconds = Histogram(
            "shoal_tus_patch_phase_seconds",
            "time of each phase of a committed tus PATCH: lock, receive, drain (parts finishing "
            "after the body), commit", ["phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.transcode_ratio = Histogram(
            "shoal_transcode_seconds_per_video_second",
            "wall-clock seconds of one ffmpeg run (every rendition) per second of the source",
            buckets=RATIO_BUCKETS, registry=r)
        self.transcode_seconds = Counter("shoal_transcode_seconds", "wall-clock seconds spent in ffmpeg runs",
                                         registry=r)
        self.transcoded_video_seconds = Counter("shoal_transcoded_video_seconds",
                                                "seconds of source video transcoded", registry=r)
        self.storage_seconds = Histogram(
            "shoal_storage_request_duration_seconds",
            "time of one storage request, by operation (storage/store.py) and outcome (ok, error)",
            ["operation", "outcome"], buckets=STORAGE_BUCKETS, registry=r)
        if process:
            ProcessCollector(registry=r)
        # labelled children, bound on first use (one .labels() per series)
        self._requests: dict[tuple[str, int], Any] = {}
        self._received: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}
        self._storage: dict[tuple[str, bool], Any] = {}
        self._phases = {p: self.tus_phase_seconds.labels(p) for p in TUS_PHASES}

    # ---- recording (hot paths) ------------------------------------------------------------------------
    def request(self, route: str, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        """One HTTP request answered (or abandoned: ``status`` 0), on either path."""
        key = (route, status // 100)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.request_seconds.labels(route, status_class(status))
        child.observe(seconds)
        if bytes_in:
            c = self._received.get(route)
            if c is None:
                c = self._received[route] = self.received_bytes.labels(route)
            c.inc(bytes_in)
        if bytes_out:
            c = self._sent.get(route)
            if c is None:
                c = self._sent[route] = self.sent_bytes.labels(route)
            c.inc(bytes_out)

    def storage(self, operation: str, seconds: float, ok: bool) -> None:
        """The :data:`storage.Observer` of this node's store."""
        key = (operation, ok)
        child = self._storage.get(key)
        if child is None:
            child = self._storage[key] = self.storage_seconds.labels(operation, "ok" if ok else "error")
        child.observe(seconds)

    def tus_patch(self, ms: Mapping[str, float]) -> None:
        """A committed PATCH's phase times in milliseconds (``PatchInProgress.ms``)."""
        for phase, value in ms.items():
            child = self._phases.get(phase)
            if child is not None:
                child.observe(value / 1000.0)

    def transcoded(self, seconds: float, video_seconds: float) -> None:
        """One ffmpeg run took ``seconds`` for ``video_seconds`` of source."""
        self.transcode_seconds.inc(seconds)
        if video_seconds > 0:
            self.transcoded_video_seconds.inc(video_seconds)
            self.transcode_ratio.observe(seconds / video_seconds)

    # ---- reading ------------------------------------------------------------------------------------------
    def text(self) -> bytes:
        """The Prometheus text exposition of everything on the registry."""
        return generate_latest(self.registry)


# ---- collectors of what others count ------------------------------------------------------------------

class Reading:
    """A collector that builds its metric families at scrape time from ``read()``: the families
    a part's ``statistics()`` gives, so the part counts with plain integers and pays nothing
    for being exported."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return list(self._read())


def counter(name: str, help_: str, value: float, labels: Mapping[str, str] | None = None) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, help_, labels=list(labels or ()))
    fam.add_metric(list((labels or {}).values()), value)
    return fam


def gauge(name: str, help_: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_, value=value)


# Counters read off a statistics object at scrape time, as (family, field, help): the metric is
# shoal_<family>_<field> (prometheus_client adds _total).  The families: the segment cache
# (node.play.segcache.CacheStatistics), the Worker's WorkerStats, the webhook Deliverer's statistics.
STAT_COUNTERS = (
    ("cache", "hits", "local reads answered from the disk cache"),
    ("cache", "misses", "local reads that filled the cache from storage"),
    ("cache", "coalesced", "local readers that waited on another reader's fill"),
    ("cache", "storage_reads", "storage GETs made by the cache (fills and fallbacks)"),
    ("cache", "owner_hops", "reads answered by the owner in one hop"),
    ("cache", "hop_fallbacks", "reads that went to storage because the owner was dead, slow or erred"),
    ("cache", "peer_requests", "hops this node answered for other nodes"),
    ("cache", "evictions", "objects evicted to stay under max_bytes"),
    ("cache", "deleted_evictions", "objects dropped because their video was deleted"),
    ("worker", "claims", "videos this node claimed (a lease with a new epoch)"),
    ("worker", "commits", "videos this node committed ready"),
    ("worker", "commits_lost", "commits refused because another node holds a newer epoch"),
    ("worker", "leases_lost", "leases lost while working"),
    ("worker", "failures", "videos this node marked failed (input refused, or attempts exhausted)"),
    ("worker", "retries", "attempts that failed and were released to be tried again"),
    ("worker", "scans", "scans of the pending index"),
    ("worker", "units_committed", "units of chunked videos (a chunk, or the audio) this node committed"),
    ("worker", "units_lost", "unit attempts stopped: a refused renewal, or the unit's lease ran out unrenewed"),
    ("webhooks", "sent", "webhook POSTs answered 2xx"),
    ("webhooks", "failed", "webhook POSTs without a 2xx answer (retried with backoff)"),
    ("webhooks", "dead", "webhook events given up after max_attempts (kept under webhooks/dead/)"),
    ("webhooks", "dropped", "outbox entries dropped because their transition never committed"),
)


def stat_counters(family: str, st: Any) -> list[Metric]:
    """``shoal_<family>_<field>`` for each of ``family``'s :data:`STAT_COUNTERS`, in their order,
    each read off ``st`` by its field."""
    return [counter(f"shoal_{family}_{k}", h, getattr(st, k)) for fam, k, h in STAT_COUNTERS if fam == family]


def cache_families(st: Any) -> list[Metric]:
    """``shoal_cache_*`` from a CacheStatistics: its counters, then gauges."""
    return [*stat_counters("cache", st),
            gauge("shoal_cache_entries", "objects in this node's segment cache", st.entries),
            gauge("shoal_cache_bytes", "bytes in this node's segment cache", st.bytes_cached),
            gauge("shoal_cache_max_bytes", "the segment cache's bound (cache.max_bytes)", st.max_bytes)]


# gossip membership (membership.MembershipStatistics): field -> (metric name, help)
GOSSIP_COUNTERS = {
    "probes_sent": ("shoal_gossip_probes_sent", "direct UDP probes sent"),
    "indirect_probes_sent": ("shoal_gossip_indirect_probes_sent", "indirect probes asked of other members"),
    "acks_received": ("shoal_gossip_acks_received", "probe acks received"),
    "suspicions": ("shoal_gossip_suspicions", "members this node started to suspect"),
    "deaths": ("shoal_gossip_deaths", "members this node declared dead"),
    "refutations": ("shoal_gossip_refutations", "suspicions of this node it refuted"),
    "stream_pings_sent": ("shoal_gossip_stream_pings_sent", "TCP fallback pings after an unanswered UDP probe"),
    "stream_acks_received": ("shoal_gossip_stream_acks_received", "probes only the TCP ping saved"),
    "packets_sent": ("shoal_gossip_packets_sent", "gossip datagrams sent"),
    "packets_received": ("shoal_gossip_packets_received", "gossip datagrams received"),
    "bytes_sent": ("shoal_gossip_sent_bytes", "gossip datagram bytes sent"),
    "bytes_received": ("shoal_gossip_received_bytes", "gossip datagram bytes received"),
    "push_pulls": ("shoal_gossip_push_pulls", "TCP push-pull state exchanges"),
    "replay_forgotten": ("shoal_gossip_replay_forgotten", "names a full replay seen-set pushed out early"),
}
MEMBER_STATES = ("alive", "suspect", "dead", "left")


def membership_families(st: Any, states: Iterable[str]) -> list[Metric]:
    """``shoal_gossip_*`` from a MembershipStatistics, and ``shoal_members{state}`` from the
    members' states."""
    out: list[Metric] = [counter(name, h, getattr(st, k)) for k, (name, h) in GOSSIP_COUNTERS.items()]
    out.append(gauge("shoal_gossip_health_score",
                     "Lifeguard local health (0..7): probe interval and timeout x (score + 1)", st.health_score))
    dropped = CounterMetricFamily("shoal_gossip_dropped", "gossip packets or streams refused, by reason",
                                  labels=["reason"])
    for reason, n in sorted(st.dropped.items()):
        dropped.add_metric([str(reason)], n)
    out.append(dropped)
    counts = dict.fromkeys(MEMBER_STATES, 0)
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    members = GaugeMetricFamily("shoal_members", "members this node sees, by state", labels=["state"])
    for s, n in counts.items():
        members.add_metric([s], n)
    out.append(members)
    return out


def worker_families(stats: Any) -> list[Metric]:
    """``shoal_worker_*_total`` and ``shoal_jobs_in_flight`` from the Worker's WorkerStats."""
    return [*stat_counters("worker", stats),
            gauge("shoal_jobs_in_flight", "processing attempts running on this node", len(stats.jobs))]


def webhooks_families(st: Any) -> list[Metric]:
    """``shoal_webhooks_*`` from the Deliverer's statistics (only when webhooks.urls are set)."""
    return [*stat_counters("webhooks", st),
            gauge("shoal_webhooks_backlog", "outbox entries of this node's videos at the last scan", st.backlog)]


@dataclass(frozen=True)
class NodeState:
    """What ``shoal_up``, ``shoal_uptime_seconds`` and ``shoal_storage_ok`` say."""
    uptime_seconds: float
    storage_ok: bool


def node_families(state: NodeState) -> list[Metric]:
    return [gauge("shoal_up", "the node process is running", 1),
            gauge("shoal_uptime_seconds", "seconds since the node started", round(state.uptime_seconds, 3)),
            gauge("shoal_storage_ok", "1 when the last storage probe succeeded", int(state.storage_ok))]


def describe(registry: CollectorRegistry) -> list[tuple[str, str, str, str]]:
    """``(name, type, labels, help)`` of every metric family on ``registry``, sorted, as
    docs/operations.md lists them (counter names with their ``_total``; histogram label ``le``
    left out)."""
    rows = {}
    for fam in registry.collect():
        name = fam.name + ("_total" if fam.type == "counter" else "")
        labels = set(LABELS.get(fam.name, ()))
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
        rows[name] = (name, fam.type, ", ".join(sorted(labels)), fam.documentation)
    return sorted(rows.values())


__all__ = ["CONTENT_TYPE", "Events", "NodeMetrics", "NodeState", "Reading", "ROUTE_CLASSES",
           "STATUS_CLASSES", "TUS_PHASES", "cache_families", "describe", "membership_families",
           "node_families", "status_class", "worker_families"]
