"""One typed configuration, read from ``cluster.yml``.

Keys of the YAML file map one-to-one onto the dataclasses below; every field
has a documented default (docs/reference.md holds the same table).  Sizes
accept ``"8 MiB"`` style strings, times are seconds.  The ``membership:``
section is gossip's own ``membership.MembershipConfig`` (that package owns its
timers and limits; the node only composes it).

``Config.local()`` is the profile tests use: the defaults with fast timers,
written as changes to the default (memberlist's DefaultLocalConfig does the
same).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from membership import MembershipConfig

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kib": KiB, "kb": 1000, "mib": MiB, "mb": 10**6, "gib": GiB, "gb": 10**9,
          "tib": 1024 * GiB, "tb": 10**12}


class ConfigError(ValueError):
    """cluster.yml is missing, malformed or inconsistent."""


def parse_size(value: Any) -> int:
    """``"8 MiB"`` -> 8388608; integers pass through."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ConfigError(f"not a size: {value!r} (try '8 MiB')")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


@dataclass(frozen=True)
class NodeSpec:
    id: str
    host: str
    http_port: int
    gossip_port: int
    weight: int = 1

    @property
    def http_addr(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def gossip_addr(self) -> str:
        return f"{self.host}:{self.gossip_port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


@dataclass(frozen=True)
class StorageConfig:
    endpoint: str = "embedded"  # or http(s)://host:port of any S3-compatible server
    bucket: str = "shoal"  # 3+ characters; created at start when missing
    region: str = "us-east-1"  # signing region (any value works for SeaweedFS and MinIO)
    embedded_port: int = 8333  # S3 port of the embedded server (its other ports: this + 100..108)
    part_size: int = 5 * MiB  # multipart part size for streamed uploads (S3 minimum; bench/ingest: 8 MiB peaks ~30 MiB higher)
    parts_in_flight: int = 2  # parts uploading concurrently per upload (memory = this * part_size)
    sign_payload: bool | None = None  # SigV4-hash request bodies; None = only over plain HTTP to a non-loopback host
    connect_timeout: float = 5.0  # seconds to connect to storage before StorageUnavailable
    read_timeout: float = 60.0  # seconds without a byte from storage before StorageUnavailable

    @property
    def embedded(self) -> bool:
        return self.endpoint == "embedded"

    def endpoint_url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.embedded_port}" if self.embedded else self.endpoint


@dataclass(frozen=True)
class Rendition:
    name: str
    height: int
    video_kbps: int
    audio_kbps: int = 128


DEFAULT_LADDER = (
    Rendition("360p", 360, 800, 96),
    Rendition("480p", 480, 1400, 128),
    Rendition("720p", 720, 2800, 128),
)


@dataclass(frozen=True)
class Timing:
    """The node's own timers (gossip's are in ``membership.MembershipConfig``)."""

    lease_seconds: float = 20.0  # processing lease length; renewed every lease/3
    recovery_interval: float = 5.0  # scan of the pending index
    upload_expiry: float = 24 * 3600.0  # an abandoned resumable upload is reclaimed after this
    orphan_grace: float = 6 * 3600.0  # a multipart upload no record names is aborted after this
    housekeeping_interval: float = 60.0  # expiry of uploads and garbage collection


@dataclass(frozen=True)
class Processing:
    max_attempts: int = 5  # infrastructure failures before a video is `failed`
    backoff_base: float = 1.0  # first retry delay (s); doubles per attempt, with jitter
    backoff_max: float = 60.0
    concurrency: int = 1  # transcodes at once per node (ffmpeg uses every core)
    segment_seconds: int = 2
    ffmpeg_threads: int = 0  # 0 = ffmpeg decides
    preset: str = "veryfast"


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * GiB  # 413 beyond this
    body_buffer: int = 1 * MiB  # request body bytes queued before we stop reading the socket


@dataclass(frozen=True)
class CacheConfig:
    max_bytes: int = 512 * MiB  # owner's segment cache on local disk
    hop_timeout: float = 1.0  # non-owner waits this long for the owner before reading storage
    fast_lane: bool = True  # cache hits answered with sendfile ahead of hypercorn (node.http.fastlane)


@dataclass(frozen=True)
class AuthConfig:
    token_env: str = "SHOAL_TOKEN"  # environment variable holding the bearer token
    cluster_key_env: str = "SHOAL_CLUSTER_KEY"  # environment variable holding the gossip HMAC key


@dataclass(frozen=True)
class Config:
    nodes: tuple[NodeSpec, ...]
    cluster: str = "shoal"
    state_dir: Path = Path(".shoal")
    seeds: tuple[str, ...] = ()
    storage: StorageConfig = field(default_factory=StorageConfig)
    ladder: tuple[Rendition, ...] = DEFAULT_LADDER
    timing: Timing = field(default_factory=Timing)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    processing: Processing = field(default_factory=Processing)
    limits: Limits = field(default_factory=Limits)
    cache: CacheConfig = field(default_factory=CacheConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)

    # ---- lookups -----------------------------------------------------------------
    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ConfigError(f"no node {node_id!r} in cluster.yml (have: {', '.join(self.node_ids)})")

    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    @property
    def seed_nodes(self) -> list[NodeSpec]:
        return [self.node(s) for s in self.seeds] if self.seeds else list(self.nodes)

    def token(self) -> str | None:
        return os.environ.get(self.auth.token_env) or None

    def cluster_key(self) -> bytes | None:
        v = os.environ.get(self.auth.cluster_key_env)
        return v.encode() if v else None

    # ---- profiles ------------------------------------------------------------------
    def local(self) -> "Config":
        """Fast timers for tests and demos on one machine."""
        return replace(
            self,
            timing=replace(self.timing, lease_seconds=6.0, recovery_interval=1.0,
                           orphan_grace=120.0, housekeeping_interval=10.0),
            membership=self.membership.local(),
            processing=replace(self.processing, backoff_base=0.5, backoff_max=5.0),
        )

    # ---- I/O -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        cfg = cls.from_dict(raw)
        if not cfg.state_dir.is_absolute():
            cfg = replace(cfg, state_dir=(path.parent / cfg.state_dir).resolve())
        return cfg

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Config":
        if not isinstance(raw, dict):
            raise ConfigError("cluster.yml must be a mapping")
        try:
            nodes = tuple(NodeSpec(**n) for n in raw.get("nodes") or [])
        except TypeError as e:
            raise ConfigError(f"bad node entry: {e}") from None
        if not nodes:
            raise ConfigError("cluster.yml names no nodes")
        ids = [n.id for n in nodes]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate node ids in {ids}")
        for n in nodes:
            if not (isinstance(n.weight, int) and 1 <= n.weight <= 100):
                raise ConfigError(f"node {n.id}: weight must be an integer from 1 to 100")
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", n.id):
                raise ConfigError(f"node id {n.id!r}: use letters, digits, '_', '.', '-'")
        kw: dict[str, Any] = {"nodes": nodes}
        # `profile: local` starts from Config.local(); the file's own keys then override it.
        profile = raw.get("profile", "default")
        if profile not in ("default", "local"):
            raise ConfigError(f"profile {profile!r}: use 'default' or 'local'")
        base = cls(nodes=nodes)
        if profile == "local":
            base = base.local()
        if "cluster" in raw:
            kw["cluster"] = str(raw["cluster"])
        if "state_dir" in raw:
            kw["state_dir"] = Path(raw["state_dir"])
        seeds = tuple(raw.get("seeds") or ())
        for s in seeds:
            if s not in ids:
                raise ConfigError(f"seed {s!r} is not a node")
        kw["seeds"] = seeds
        kw["storage"] = _section(StorageConfig, raw.get("storage"), base.storage, sizes={"part_size"})
        if raw.get("ladder"):
            try:
                kw["ladder"] = tuple(Rendition(**r) for r in raw["ladder"])
            except TypeError as e:
                raise ConfigError(f"bad ladder entry: {e}") from None
        swim = {f.name for f in dataclasses.fields(MembershipConfig)}
        moved = sorted(swim & set(raw["timing"])) if isinstance(raw.get("timing"), dict) else []
        if moved:
            raise ConfigError(f"timing.{moved[0]} moved to the membership: section "
                              f"(membership.{moved[0]})")
        kw["timing"] = _section(Timing, raw.get("timing"), base.timing)
        try:
            kw["membership"] = _section(MembershipConfig, raw.get("membership"), base.membership)
        except ValueError as e:  # MembershipConfig's own range checks
            raise ConfigError(str(e)) from None
        kw["processing"] = _section(Processing, raw.get("processing"), base.processing)
        kw["limits"] = _section(Limits, raw.get("limits"), base.limits, sizes={"max_upload_bytes", "body_buffer"})
        kw["cache"] = _section(CacheConfig, raw.get("cache"), base.cache, sizes={"max_bytes"})
        kw["auth"] = _section(AuthConfig, raw.get("auth"), base.auth)
        cfg = cls(**kw)
        if cfg.storage.part_size < 5 * MiB:
            raise ConfigError("storage.part_size must be at least 5 MiB (S3's minimum part)")
        if len(cfg.storage.bucket) < 3:
            raise ConfigError("storage.bucket needs 3 or more characters")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state_dir"] = str(self.state_dir)
        return d


def _section(cls: type, raw: Any, base: Any, sizes: set[str] = frozenset()) -> Any:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {raw!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kw = {}
    for k, v in raw.items():
        if k not in known:
            raise ConfigError(f"unknown key {k!r} (known: {', '.join(known)})")
        if k in sizes:
            v = parse_size(v)
        kw[k] = v
    return replace(base, **kw)
