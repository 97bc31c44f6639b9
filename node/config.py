"""One typed configuration, read from ``cluster.yml``.

Keys of the YAML file map one-to-one onto the msgspec Structs below; every field has a
documented default (docs/reference.md is generated from this module by
``scripts/gen_reference.py``, and a test keeps the two equal).  Sizes accept ``"8 MiB"`` style
strings, times are seconds.  The ``membership:`` section is gossip's own
``membership.MembershipConfig`` (that package owns its timers and limits; the node only composes
it).

Decoding is strict (``node/decode.py`` over ``msgspec.convert(..., strict=True)``): a wrong type
(``http_port: "8001"``, ``fast_lane: "no"``), a value out of range or an unknown key anywhere is
a :class:`ConfigError` that lists every problem with its path
(``membership.probe_interval: expected a number, got "fast"``).  Value checks that one type
cannot say live in each Struct's ``__post_init__`` (so a Config built in code obeys them too),
naming their field as ``field: text``; range bounds that only the file can get wrong are
``msgspec.Meta`` constraints on the field.

``Config.local()`` is the profile tests use: the defaults with fast timers, written as changes
to the default (:data:`LOCAL_PROFILE`; memberlist's DefaultLocalConfig does the same).
``Config.effective()`` is the configuration in force as plain data (what ``shoal config check``
prints), with secrets masked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
import yaml
from msgspec import Meta, field
from msgspec.structs import replace

from membership import MembershipConfig
from node.decode import DecodeError, decode

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kib": KiB, "kb": 1000, "mib": MiB, "mb": 10**6, "gib": GiB, "gb": 10**9,
          "tib": 1024 * GiB, "tb": 10**12}

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """cluster.yml is missing, malformed or inconsistent; ``problems`` lists each, with its path."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SecretsMissing(ConfigError):
    """The token or the cluster key is not set and cluster.yml does not say `auth: none`."""


class Size(int):
    """A byte count; cluster.yml writes it as an integer or as ``"8 MiB"`` (:func:`parse_size`)."""


def parse_size(value: Any) -> int:
    """``"8 MiB"`` -> 8388608; integers pass through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        raise ConfigError(f"not a size: {value!r} (try '8 MiB')")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


def human_size(value: int) -> int | str:
    """``8388608`` -> ``"8 MiB"``; sizes that are not whole MiB stay integers."""
    if value >= GiB and value % GiB == 0:
        return f"{value // GiB} GiB"
    if value >= MiB and value % MiB == 0:
        return f"{value // MiB} MiB"
    return int(value)


def _decode_hook(typ: type, value: Any) -> Any:
    """msgspec's hook for the two types it does not know: sizes and paths."""
    if typ is Size:
        try:
            return Size(parse_size(value))
        except ConfigError as e:
            raise ValueError(str(e)) from None
    if typ is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise ValueError(f"expected a path (a string), got {value!r}")
    raise NotImplementedError(typ)


Port = Annotated[int, Meta(ge=1, le=65535)]
Positive = Annotated[float, Meta(gt=0)]
EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every Struct of cluster.yml: immutable, and an unknown key is an error."""


class NodeSpec(Section):
    id: str
    host: str
    http_port: Port
    gossip_port: Port
    weight: Annotated[int, Meta(ge=1, le=100)] = 1

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.id):
            raise ConfigError(f"id: {self.id!r}: use 1-64 letters, digits, '_', '.', '-'")

    @property
    def http_addr(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def gossip_addr(self) -> str:
        return f"{self.host}:{self.gossip_port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


class StorageConfig(Section):
    endpoint: str = "embedded"  # or http(s)://host:port of any S3-compatible server
    bucket: Annotated[str, Meta(min_length=3, max_length=63)] = "shoal"  # 3+ characters; created at start when missing
    region: str = "us-east-1"  # signing region (any value works for SeaweedFS and MinIO)
    embedded_port: Port = 8333  # S3 port of the embedded server (its other ports: this + 100..108)
    part_size: Size = 5 * MiB  # multipart part size for streamed uploads (S3 minimum; bench/ingest: 8 MiB peaks ~30 MiB higher)
    parts_in_flight: Annotated[int, Meta(ge=1)] = 2  # parts uploading concurrently per upload (memory = this * part_size)
    sign_payload: bool | None = None  # SigV4-hash request bodies; None = only over plain HTTP to a non-loopback host
    connect_timeout: Positive = 5.0  # seconds to connect to storage before StorageUnavailable
    read_timeout: Positive = 60.0  # seconds without a byte from storage before StorageUnavailable

    def __post_init__(self) -> None:
        if self.endpoint != "embedded" and not re.match(r"https?://[^/\s]+", self.endpoint):
            raise ConfigError(f"endpoint: {self.endpoint!r}: `embedded` or an http(s)://host:port URL")
        if self.part_size < 5 * MiB:
            raise ConfigError("part_size: must be at least 5 MiB (S3's minimum part)")

    @property
    def embedded(self) -> bool:
        return self.endpoint == "embedded"

    def endpoint_url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.embedded_port}" if self.embedded else self.endpoint


class Rendition(Section):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    height: Annotated[int, Meta(ge=2)]
    video_kbps: Annotated[int, Meta(gt=0)]
    audio_kbps: Annotated[int, Meta(ge=0)] = 128


# Lowest rungs 144p/240p so a 360p source still gets three renditions (never upscaled).
DEFAULT_LADDER = (
    Rendition("144p", 144, 200, 64),
    Rendition("240p", 240, 400, 64),
    Rendition("360p", 360, 800, 96),
    Rendition("480p", 480, 1400, 128),
    Rendition("720p", 720, 2800, 128),
)


class Timing(Section):
    """The node's own timers (gossip's are in ``membership.MembershipConfig``)."""

    lease_seconds: Positive = 20.0  # processing lease length; renewed every lease/3
    recovery_interval: Positive = 5.0  # scan of the pending index
    upload_expiry: Positive = 24 * 3600.0  # an abandoned resumable upload is reclaimed after this
    orphan_grace: Positive = 6 * 3600.0  # a multipart upload no record names is aborted after this
    housekeeping_interval: Positive = 60.0  # expiry of uploads and garbage collection


class Processing(Section):
    max_attempts: Annotated[int, Meta(ge=1)] = 5  # infrastructure failures before a video is `failed`
    backoff_base: Positive = 1.0  # first retry delay (s); doubles per attempt, with jitter
    backoff_max: Positive = 60.0  # longest retry delay (s)
    concurrency: Annotated[int, Meta(ge=1)] = 1  # transcodes at once per node (ffmpeg uses every core)
    segment_seconds: Annotated[int, Meta(ge=1, le=60)] = 2  # HLS segment length (s)
    ffmpeg_threads: Annotated[int, Meta(ge=0)] = 0  # 0 = ffmpeg decides
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                    "slower", "veryslow", "placebo"] = "veryfast"  # x264 preset
    chunked: bool = False  # cut videos longer than 1.5 chunks into chunks any node may encode (docs/lifecycle.md "Chunks"); shorter ones, and all when off, stay one ffmpeg run
    chunk_segments: Annotated[int, Meta(ge=1, le=3600)] = 15  # whole segments per chunk: 15 * 2 s = 30 s chunks


class Limits(Section):
    max_upload_bytes: Size = 20 * GiB  # 413 beyond this
    body_buffer: Size = 1 * MiB  # request body bytes queued before we stop reading the socket

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "body_buffer"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be a positive size")


# Container formats (libavformat demuxer names) a video platform accepts; a format is accepted
# when any of its names is listed ("mov" admits "mov,mp4,m4a,3gp,3g2,mj2"). Not listed on
# purpose: concat/ffconcat, hls, dash (they open other files and URLs), image2 and the image
# pipes (a single huge picture), bare elementary streams (random bytes probe as H.263).
MEDIA_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "ogg", "mpeg", "asf", "mxf")


class MediaLimits(Section):
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
    probe_memory: Size = 1 * GiB  # RLIMIT_DATA of the probe child (8K source needs ~150 MiB)
    ffmpeg_memory: Size = 2 * GiB  # RLIMIT_DATA of ffmpeg (default ladder: ~0.7 GiB 1080p, ~1.05 GiB 8K)
    formats: tuple[str, ...] = MEDIA_FORMATS  # demuxers ffmpeg and PyAV may use (format_whitelist); a list or "a, b"

    def __post_init__(self) -> None:
        """Raise ConfigError for a limit that cannot work."""
        positive = ("max_duration_s", "max_width", "max_height", "max_pixels", "max_fps",
                    "wall_time_factor", "probe_timeout_s", "probe_memory", "ffmpeg_memory")
        bad = [f"media.{name}: must be a positive number, got {getattr(self, name)!r}"
               for name in positive if not _positive(getattr(self, name))]
        if self.wall_time_base_s < 0:
            bad.append(f"media.wall_time_base_s: must be >= 0, got {self.wall_time_base_s!r}")
        if self.max_frames is not None and self.max_frames <= 0:
            bad.append(f"media.max_frames: must be positive (or null), got {self.max_frames!r}")
        if not self.formats or not all(isinstance(f, str) and re.fullmatch(r"[a-z0-9_]{1,32}", f)
                                       for f in self.formats):
            bad.append(f"media.formats: a list of demuxer names, got {list(self.formats)!r}")
        if bad:
            raise ConfigError(*bad)

    @property
    def frame_limit(self) -> int:
        """``max_frames``, or ``max_duration_s * max_fps`` when not set."""
        if self.max_frames is not None:
            return self.max_frames
        return int(self.max_duration_s * self.max_fps)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


class CacheConfig(Section):
    max_bytes: Size = 512 * MiB  # owner's segment cache on local disk
    hop_timeout: Positive = 1.0  # non-owner waits this long for the owner before reading storage
    fast_lane: bool = True  # cache hits answered with sendfile ahead of hypercorn (node.http.fastlane)


class AuthConfig(Section):
    """Where the node's two secrets come from, and whether they are required.

    ``auth: none`` (the string, at the top level of cluster.yml) is the only way to run
    without them; the mapping form names the environment variables and keeps them required.
    """

    token_env: EnvName = "SHOAL_TOKEN"  # environment variable holding the bearer token
    cluster_key_env: EnvName = "SHOAL_CLUSTER_KEY"  # environment variable holding the gossip HMAC key
    # Invariant: False only when cluster.yml says `auth: none` explicitly.
    required: bool = True  # not a key: `auth: none` (the string, top level) sets it False; see Top level


_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class CorsConfig(Section):
    """Which web origins may call the API from a browser (node/http/edge.py applies it)."""

    origins: tuple[str, ...] = ("*",)  # `["*"]`: any origin; else exact `scheme://host[:port]` entries, echoed with `Vary: Origin`, others get no CORS headers

    def __post_init__(self) -> None:
        if not self.origins:
            raise ConfigError("origins: a non-empty list, e.g. [\"*\"] or [\"https://app.example\"]")
        bad = []
        for i, o in enumerate(self.origins):
            if o == "*":
                if len(self.origins) > 1:
                    bad.append(f"origins[{i}]: '*' stands alone (it already allows every origin)")
            elif not (isinstance(o, str) and _ORIGIN.fullmatch(o)):
                bad.append(f"origins[{i}]: {o!r} is not an origin like 'https://app.example:8443' "
                           "(scheme and host, no path, no trailing slash)")
        if bad:
            raise ConfigError(*bad)


_WEBHOOK_URL = re.compile(r"https?://[^\s/?#]+(?:[/?][^\s#]*)?")


class WebhooksConfig(Section):
    """Where video events are POSTed, and how hard we try (node/webhooks, docs/webhooks.md)."""

    urls: Annotated[tuple[str, ...], Meta(max_length=16)] = ()  # receivers (http/https); every event goes to each; empty: webhooks off, no outbox writes
    secret_env: EnvName = "SHOAL_WEBHOOK_SECRET"  # environment variable with the HMAC-SHA256 key of X-Shoal-Signature; required when urls are set
    timeout: Positive = 5.0  # seconds for one POST (connect, send, answer)
    max_attempts: Annotated[int, Meta(ge=1, le=1000)] = 12  # delivery rounds before an event is dead (moved to webhooks/dead/, log line webhook_dead)
    backoff_base: Positive = 1.0  # delay after the first failed round (s); doubles per round, with jitter
    backoff_max: Positive = 300.0  # longest delay between rounds (s)
    scan_interval: Positive = 2.0  # seconds between scans of the outbox (and at once when the ring changes)
    concurrency: Annotated[int, Meta(ge=1, le=1000)] = 8  # events in delivery at once per node
    intent_grace: Positive = 300.0  # an outbox entry whose transition never committed is dropped after this

    def __post_init__(self) -> None:
        bad = [f"urls[{i}]: {u!r} is not an http(s) URL" for i, u in enumerate(self.urls)
               if not _WEBHOOK_URL.fullmatch(u)]
        if bad:
            raise ConfigError(*bad)

    def secret(self) -> bytes | None:
        """The signing key from ``$<secret_env>``; None when unset or empty."""
        v = os.environ.get(self.secret_env)
        return v.encode() if v else None


# `profile: local`: fast timers for tests and demos on one machine, as changes to the default.
LOCAL_PROFILE: dict[str, dict[str, Any]] = {
    "timing": {"lease_seconds": 6.0, "recovery_interval": 1.0, "orphan_grace": 120.0,
               "housekeeping_interval": 10.0},
    "membership": {f.name: getattr(MembershipConfig().local(), f.name)
                   for f in msgspec.structs.fields(MembershipConfig)
                   if getattr(MembershipConfig().local(), f.name) != getattr(MembershipConfig(), f.name)},
    "processing": {"backoff_base": 0.5, "backoff_max": 5.0},
}


class Config(Section):
    nodes: tuple[NodeSpec, ...]  # see Top level
    cluster: str = "shoal"
    state_dir: Path = Path(".shoal")
    profile: Literal["default", "local"] = "default"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
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
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    access_log: bool = True  # one `http_request` JSON line per request (node/http/edge.py)

    def __post_init__(self) -> None:
        bad = []
        if not self.nodes:
            bad.append("nodes: cluster.yml names no nodes")
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            bad.append(f"nodes: duplicate node ids in {ids}")
        bad += [f"seeds[{i}]: {s!r} is not a node" for i, s in enumerate(self.seeds) if s not in ids]
        if not self.ladder:
            bad.append("ladder: at least one rendition")
        names = [r.name for r in self.ladder]
        if len(set(names)) != len(names):
            bad.append(f"ladder: duplicate rendition names in {names}")
        if bad:
            raise ConfigError(*bad)

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
        """Fast timers for tests and demos on one machine (:data:`LOCAL_PROFILE`)."""
        return replace(self, profile="local", **{
            section: replace(getattr(self, section), **changes)
            for section, changes in LOCAL_PROFILE.items()})

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
    def from_dict(cls, raw: Any) -> "Config":
        """The Config a loaded cluster.yml describes; :class:`ConfigError` lists every problem."""
        if not isinstance(raw, dict):
            raise ConfigError("cluster.yml must be a mapping of keys (nodes:, storage:, ...)")
        raw, early = _prepared(raw)
        try:
            cfg = decode(raw, cls, dec_hook=_decode_hook)
        except DecodeError as e:
            raise ConfigError(*early, *e.problems) from None
        if early:
            raise ConfigError(*early)
        return cfg

    def effective(self) -> dict[str, Any]:
        """The configuration in force as plain data, the way cluster.yml writes it: defaults
        filled in, sizes as ``"8 MiB"``, ``auth: none`` as the string, and the password of a
        storage URL masked (the secrets themselves are environment variables, never here)."""
        out = _plain(self)
        if not self.auth.required:
            out["auth"] = "none"
        else:
            del out["auth"]["required"]
        out["storage"]["endpoint"] = mask_url(self.storage.endpoint)
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.effective()


def effective_yaml(cfg: Config) -> str:
    """:meth:`Config.effective` as YAML, in the order of the fields."""
    return yaml.safe_dump(cfg.effective(), sort_keys=False, default_flow_style=False, width=100)


def mask_url(url: str) -> str:
    """``https://user:secret@host`` -> ``https://user:***@host``; other strings unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {f.name: (human_size(v) if isinstance(v, Size) or f.type is Size else _plain(v))
                for f in msgspec.structs.fields(value) for v in (getattr(value, f.name),)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_MEMBERSHIP_KEYS = frozenset(f.name for f in msgspec.structs.fields(MembershipConfig))


def _prepared(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The file's document made ready for strict decoding, and the problems found on the way:
    keys with no value keep their default, ``auth: none`` becomes ``required: false``, a
    ``formats`` string is split, ``profile: local`` fills in its timers the file does not set."""
    raw = {k: v for k, v in raw.items() if v is not None}
    early: list[str] = []
    auth = raw.get("auth")
    if auth == "none":
        raw["auth"] = {"required": False}
    elif isinstance(auth, str):
        early.append(f"auth: {auth!r}: say `auth: none` to run without secrets, or give a "
                     "mapping with token_env / cluster_key_env")
        del raw["auth"]
    elif isinstance(auth, dict) and "required" in auth:
        early.append("auth: unknown key 'required' (to run without secrets say `auth: none`)")
        raw["auth"] = {k: v for k, v in auth.items() if k != "required"}
    timing = raw.get("timing")
    if isinstance(timing, dict):
        for key in sorted(_MEMBERSHIP_KEYS & set(timing)):
            early.append(f"timing.{key}: moved to the membership: section (membership.{key})")
        raw["timing"] = {k: v for k, v in timing.items() if k not in _MEMBERSHIP_KEYS}
    media = raw.get("media")
    if isinstance(media, dict) and isinstance(media.get("formats"), str):
        raw["media"] = {**media, "formats": [f.strip() for f in media["formats"].split(",")]}
    if raw.get("profile") == "local":
        for section, changes in LOCAL_PROFILE.items():
            given = raw.get(section, {})
            if isinstance(given, dict):
                raw[section] = {**changes, **given}
    return raw, early


def check_secrets(cfg: Config, node_id: str) -> None:
    """A node's start-up check: raise :class:`SecretsMissing`, or, under ``auth: none``,
    log one warning line saying what runs open (the node then starts).  Webhook URLs without
    their signing key are always an error (``auth: none`` does not cover them)."""
    if cfg.webhooks.urls and cfg.webhooks.secret() is None:
        raise SecretsMissing(f"${cfg.webhooks.secret_env} not set: webhooks.urls are configured and "
                             "every webhook is signed with that key (docs/webhooks.md)")
    missing = cfg.require_secrets()
    if not cfg.auth.required:
        from node import log
        log.warning("auth_none", node=node_id, missing=missing,
                    writes="open" if cfg.auth.token_env in missing else "token",
                    gossip="unauthenticated" if cfg.auth.cluster_key_env in missing else "cluster key",
                    detail="cluster.yml says `auth: none`: anyone who reaches the node may write "
                           "and speak gossip with what is missing")
