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


# Lowest rungs 144p/240p so a 360p source still gets three renditions (never upscaled).
DEFAULT_LADDER = (
    Rendition("144p", 144, 200, 64),
    Rendition("240p", 240, 400, 64),
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
    chunked: bool = False  # cut videos longer than 1.5 chunks into chunks any node may encode (docs/lifecycle.md "Chunks"); shorter ones, and all when off, stay one ffmpeg run
    chunk_segments: int = 15  # whole segments per chunk: 15 * 2 s = 30 s chunks


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * GiB  # 413 beyond this
    body_buffer: int = 1 * MiB  # request body bytes queued before we stop reading the socket


# Container formats (libavformat demuxer names) a video platform accepts; a format is accepted
# when any of its names is listed ("mov" admits "mov,mp4,m4a,3gp,3g2,mj2"). Not listed on
# purpose: concat/ffconcat, hls, dash (they open other files and URLs), image2 and the image
# pipes (a single huge picture), bare elementary streams (random bytes probe as H.263).
MEDIA_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "ogg", "mpeg", "asf", "mxf")


@dataclass(frozen=True)
class MediaLimits:
    """What a source may be and cost (docs/security.md "Media: resource limits")."""

    max_duration_s: float = 6 * 3600.0  # longer sources fail with media_limit (header or timestamp span)
    max_width: int = 8192  # coded and display width in pixels (8K UHD is 7680)
    max_height: int = 8192  # coded and display height in pixels (portrait 8K is 7680)
    max_pixels: int = 36_000_000  # width * height of one frame (8192x4320 is 35.4 Mpx)
    max_fps: float = 240.0  # average frame rate of the video stream
    max_frames: int | None = None  # video frames (header count, else duration * fps); None = max_duration_s * max_fps
    wall_time_factor: float = 10.0  # ffmpeg is killed after factor * duration + wall_time_base_s
    wall_time_base_s: float = 60.0  # seconds added to every ffmpeg deadline (formulas: node/process/limits.py)
    probe_timeout_s: float = 120.0  # the probe child is killed after this
    probe_memory: int = 1 * GiB  # RLIMIT_DATA of the probe child (8K source needs ~150 MiB)
    ffmpeg_memory: int = 2 * GiB  # RLIMIT_DATA of ffmpeg (default ladder: ~0.7 GiB 1080p, ~1.05 GiB 8K)
    formats: tuple[str, ...] = MEDIA_FORMATS  # demuxers ffmpeg and PyAV may use (format_whitelist)

    @property
    def frame_limit(self) -> int:
        """``max_frames``, or ``max_duration_s * max_fps`` when not set."""
        if self.max_frames is not None:
            return self.max_frames
        return int(self.max_duration_s * self.max_fps)

    def validate(self) -> None:
        """Raise ConfigError for a limit that cannot work."""
        positive = ("max_duration_s", "max_width", "max_height", "max_pixels", "max_fps",
                    "wall_time_factor", "probe_timeout_s", "probe_memory", "ffmpeg_memory")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"media.{name} must be a positive number, got {value!r}")
        if self.wall_time_base_s < 0 or (self.max_frames is not None and self.max_frames <= 0):
            raise ConfigError("media.wall_time_base_s must be >= 0 and media.max_frames positive")
        if not self.formats or not all(re.fullmatch(r"[a-z0-9_]{1,32}", f) for f in self.formats):
            raise ConfigError(f"media.formats: a list of demuxer names, got {self.formats!r}")


@dataclass(frozen=True)
class CacheConfig:
    max_bytes: int = 512 * MiB  # owner's segment cache on local disk
    hop_timeout: float = 1.0  # non-owner waits this long for the owner before reading storage
    fast_lane: bool = True  # cache hits answered with sendfile ahead of hypercorn (node.http.fastlane)


@dataclass(frozen=True)
class AuthConfig:
    """Where the node's two secrets come from, and whether they are required.

    ``auth: none`` (the string, at the top level of cluster.yml) is the only way to run
    without them; the mapping form names the environment variables and keeps them required.
    """

    token_env: str = "SHOAL_TOKEN"  # environment variable holding the bearer token
    cluster_key_env: str = "SHOAL_CLUSTER_KEY"  # environment variable holding the gossip HMAC key
    # Invariant: False only when cluster.yml says `auth: none` explicitly.
    required: bool = True  # not a key: `auth: none` (the string, top level) sets it False; see Top level


@dataclass(frozen=True)
class CorsConfig:
    """Which web origins may call the API from a browser (node/http/cors.py applies it)."""

    origins: tuple[str, ...] = ("*",)  # `["*"]`: any origin; else exact `scheme://host[:port]` entries, echoed with `Vary: Origin`, others get no CORS headers


def _cors_section(raw: Any, base: CorsConfig) -> CorsConfig:
    cfg = _section(CorsConfig, raw, base)
    origins = cfg.origins
    if isinstance(origins, str) or not isinstance(origins, (list, tuple)) or not origins:
        raise ConfigError("cors.origins: a non-empty list, e.g. [\"*\"] or [\"https://app.example\"]")
    for o in origins:
        if o == "*":
            if len(origins) > 1:
                raise ConfigError("cors.origins: '*' stands alone (it already allows every origin)")
        elif not isinstance(o, str) or not re.fullmatch(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", o):
            raise ConfigError(f"cors.origins: {o!r} is not an origin like 'https://app.example:8443' "
                              "(scheme and host, no path, no trailing slash)")
    return replace(cfg, origins=tuple(origins))


class SecretsMissing(ConfigError):
    """The token or the cluster key is not set and cluster.yml does not say `auth: none`."""


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
    media: MediaLimits = field(default_factory=MediaLimits)
    auth: AuthConfig = field(default_factory=AuthConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)

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
        """The bearer token from ``$<auth.token_env>``; None when unset or empty."""
        return os.environ.get(self.auth.token_env) or None

    def cluster_key(self) -> bytes | None:
        """The gossip and hop key from ``$<auth.cluster_key_env>``; None when unset or empty."""
        v = os.environ.get(self.auth.cluster_key_env)
        return v.encode() if v else None

    def missing_secrets(self) -> list[str]:
        """The environment variables a node needs but does not have (empty: all there)."""
        return [env for env, value in ((self.auth.token_env, self.token()),
                                       (self.auth.cluster_key_env, self.cluster_key()))
                if value is None]

    def require_secrets(self) -> list[str]:
        """Check the secrets at start; return what runs open (only under ``auth: none``).

        Raises :class:`SecretsMissing` when a secret is missing and cluster.yml does not
        say ``auth: none``: a node never falls back to an open or name-derived key.
        """
        missing = self.missing_secrets()
        if missing and self.auth.required:
            raise SecretsMissing(
                f"{' and '.join('$' + m for m in missing)} not set: a node needs the bearer token "
                f"and the cluster key (`shoal up` generates both into <state_dir>/secrets.json). "
                f"To run without them on purpose, put `auth: none` in cluster.yml")
        return missing

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
        kw["auth"] = _auth_section(raw.get("auth"), base.auth)
        kw["media"] = _media_section(raw.get("media"), base.media)
        kw["cors"] = _cors_section(raw.get("cors"), base.cors)
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


def _media_section(raw: Any, base: MediaLimits) -> MediaLimits:
    media = _section(MediaLimits, raw, base, sizes={"probe_memory", "ffmpeg_memory"})
    formats = media.formats
    if isinstance(formats, str):
        formats = formats.split(",")
    media = replace(media, formats=tuple(str(f).strip() for f in formats))
    media.validate()
    return media


def check_secrets(cfg: Config, node_id: str) -> None:
    """A node's start-up check: raise :class:`SecretsMissing`, or, under ``auth: none``,
    log one warning line saying what runs open (the node then starts)."""
    missing = cfg.require_secrets()
    if not cfg.auth.required:
        from node import log
        log.warning("auth_none", node=node_id, missing=missing,
                    writes="open" if cfg.auth.token_env in missing else "token",
                    gossip="unauthenticated" if cfg.auth.cluster_key_env in missing else "cluster key",
                    detail="cluster.yml says `auth: none`: anyone who reaches the node may write "
                           "and speak gossip with what is missing")


def _auth_section(raw: Any, base: AuthConfig) -> AuthConfig:
    """``auth: none`` (secrets not required), or the mapping of environment variable names."""
    if raw == "none":
        return replace(base, required=False)
    if isinstance(raw, str):
        raise ConfigError(f"auth: {raw!r}: say `auth: none` to run without secrets, or give a "
                          "mapping with token_env / cluster_key_env")
    if isinstance(raw, dict) and "required" in raw:
        raise ConfigError("auth: unknown key 'required' (to run without secrets say `auth: none`)")
    return _section(AuthConfig, raw, base)


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
