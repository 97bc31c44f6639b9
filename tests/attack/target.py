"""The attack suite's target: one prepared cluster, and the checks every case ends with.

:func:`prepare` uploads the video every case must leave intact (and a second one that the delete
case removes), snapshots its master playlist and a segment, writes a decoy object for the storage
cases, and uploads the hostile media (they process while the other cases run).  After each case:

* nothing leaked: no traceback text, no local path, no Python exception name in any body;
* nothing lost: the ready video's master playlist and segment are byte-identical to before;
* every node healthy: its process alive and ``/healthz`` 200.

Every socket read has a short timeout; every wait has a deadline.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import media
from harness import Cluster, upload, wait_state
from membership import codec
from node.process import ffmpeg_exe

from . import wire
from .cases import Expect
from .checks import HOP_HEADER, Answer, Stream, error_shape, hop_header, leaks

MEDIA_DEADLINE = 30.0  # seconds from the upload's answer to `failed`
MEDIA_GRACE = 10.0  # allowance for 2 busy cores
MEDIA_CODES = ("undecodable", "undecodable_input", "media_limit")
BARE_REFUSALS = (400, 413, 414, 431, 501, 505)  # h11-level refusals without a body, then a close
DELETE_LAG = 2.0
HEALTH_TIMEOUT = 15.0  # a node that cannot answer /healthz in 15 s on 2 busy cores is not healthy


@dataclass
class Target:
    cluster: Cluster
    base: Path
    vid: str
    epoch: int
    seg: str  # e.g. "144p/seg_00000.ts"
    master: bytes
    seg_bytes: bytes
    victim: str
    decoy_key: str
    decoy_body: bytes
    storage_ports: dict[str, int | None]
    media: dict[str, tuple] = field(default_factory=dict)  # name -> ("id", vid, t) | ("refused", Answer)
    seen: list[tuple[str, Answer]] = field(default_factory=list)
    cases_run: int = 0

    # ---- addresses ----------------------------------------------------------------------------
    @property
    def key(self) -> bytes:
        return self.cluster.launcher.secrets().cluster_key.encode()

    @property
    def gossip_mac_key(self) -> bytes:
        return codec.derive_key(self.key, self.cluster.config.cluster)

    def http_port(self, node: str) -> int:
        return self.cluster.config.node(node).http_port

    def gossip_port(self, node: str) -> int:
        return self.cluster.config.node(node).gossip_port

    def url(self, node: str) -> str:
        return self.cluster.url(node)

    @property
    def rendition(self) -> str:
        return self.seg.split("/", 1)[0]

    def fill(self, text: str) -> str:
        for k, v in {"@VIDUP@": self.vid.upper(), "@VID@": self.vid, "@EPOCH_NEXT@": str(self.epoch + 1),
                     "@EPOCH@": str(self.epoch), "@SEG@": self.seg, "@REND@": self.rendition,
                     "@TOKEN@": self.cluster.token, "@MISSING@": "a" * 26,
                     "@BUCKET@": self.cluster.bucket, "@DECOY@": self.decoy_key}.items():
            text = text.replace(k, v)
        return text

    def local_paths(self) -> tuple[str, ...]:
        return (str(self.cluster.state_dir), str(self.base), str(self.cluster.dir))

    def note(self, where: str, a: Answer) -> Answer:
        self.seen.append((where, a))
        return a


# ---- preparing ---------------------------------------------------------------------------------------

def storage_side_ports(c: Cluster) -> dict[str, int | None]:
    """The embedded server's ports, read from its command line (``-filer.port=...``)."""
    ports: dict[str, int | None] = {"s3": c.config.storage.embedded_port, "filer": None, "master": None,
                                    "volume": None}
    pid = c.pid("storage")
    if pid is None:
        return ports
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    for a in args:
        m = re.fullmatch(r"-(filer|master|volume)\.port=(\d+)", a)
        if m:
            ports[m.group(1)] = int(m.group(2))
    return ports


def s3_client(c: Cluster, access_key: str | None = None, secret_key: str | None = None):
    import boto3
    from botocore.config import Config as BotoConfig
    return boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=access_key or c.access_key,
                        aws_secret_access_key=secret_key or c.secret_key, region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=5))


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + chunk(b"IEND", b""))


def _ffmpeg(args: list[str]) -> None:
    import subprocess
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                   check=True, capture_output=True, timeout=60)


def hostile_media(base: Path, c: Cluster, local_video: Path) -> dict[str, bytes]:
    """The hostile uploads, by case name."""
    d = base / "hostile"
    d.mkdir(exist_ok=True)
    _ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1:duration=2", "-vf", "setpts=N*36000/TB",
             "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", str(d / "gap.mkv")])
    _ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=176x144:rate=10:duration=1", "-c:v", "h263", "-f", "h263",
             str(d / "bare.h263")])
    secrets = c.launcher.secrets_path
    s3_url = f"{c.s3_endpoint}/{c.bucket}/videos/{'a' * 26}/source"
    return {
        "media_random_bytes": media.make_random_bytes(d / "random.bin", 64 * 1024, seed=7).read_bytes(),
        "media_truncated_mp4": media.make_truncated_mp4(d / "trunc.mp4").read_bytes(),
        "media_ffconcat_local_paths": (f"ffconcat version 1.0\nfile '{local_video}'\nfile '/etc/passwd'\n"
                                       f"file '{secrets}'\n").encode(),
        "media_hls_playlist_urls": (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
                                    f"#EXTINF:4.0,\nfile://{local_video}\n#EXTINF:4.0,\nfile:///etc/passwd\n"
                                    f"#EXTINF:4.0,\n{s3_url}\n#EXT-X-ENDLIST\n").encode(),
        "media_huge_png": _png(65535, 65535),
        "media_mkv_10h_gap": (d / "gap.mkv").read_bytes(),
        "media_bare_h263": (d / "bare.h263").read_bytes(),
    }


def prepare(c: Cluster, base: Path) -> Target:
    src = media.make_video(base / "keep.mp4", seconds=4)
    vid = upload(c, "n1", src, {"X-Filename": "keep.mp4"}).json()["id"]
    victim = upload(c, "n2", src, {"X-Filename": "victim.mp4"}).json()["id"]
    rec = wait_state(c, "n1", vid, "ready", timeout=120)
    wait_state(c, "n1", victim, "ready", timeout=120)
    base_url = c.url("n1") + f"/v1/videos/{vid}/hls/"
    master = httpx.get(base_url + "master.m3u8", timeout=20).content
    playlist = next(l for l in master.decode().splitlines() if l and not l.startswith("#"))
    rendition = playlist.split("/", 1)[0]
    index = httpx.get(base_url + playlist, timeout=20).text
    seg = rendition + "/" + next(l for l in index.splitlines() if l.endswith(".ts"))
    seg_bytes = httpx.get(base_url + seg, timeout=20).content
    decoy_key, decoy_body = "attack/decoy.txt", b"decoy: the storage cases must neither read nor delete me\n"
    s3_client(c).put_object(Bucket=c.bucket, Key=decoy_key, Body=decoy_body)
    t = Target(c, base, vid, int(rec["epoch"]), seg, master, seg_bytes, victim, decoy_key, decoy_body,
               storage_side_ports(c))
    for i, (name, data) in enumerate(hostile_media(base, c, src).items()):
        r = httpx.post(c.url(c.node_ids[i % 3]) + "/v1/videos", content=data, timeout=30,
                       headers=c.headers({"X-Filename": name}))
        a = Answer(r.status_code, dict(r.headers), r.content)
        t.media[name] = ("id", r.json()["id"], time.monotonic()) if r.status_code == 201 else ("refused", a)
    return t


# ---- checking answers ----------------------------------------------------------------------------------

def check_answer(a: Answer, exp: Expect, what: str, *, closed_after: bool = False) -> None:
    if exp.drop_ok and closed_after and not a.body and a.status in BARE_REFUSALS:
        return  # a protocol-level refusal and a close: the connection was dropped with a status line
    assert a.status in exp.statuses, f"{what}: status {a.status}, expected {exp.statuses}; body {a.body[:300]!r}"
    if a.status >= 400:
        shape = error_shape(a.body)
        assert shape is not None, f"{what}: {a.status} without the error shape: {a.body[:300]!r}"
        if exp.codes:
            assert shape[0] in exp.codes, f"{what}: code {shape[0]!r}, expected {exp.codes}"
    for h in exp.forbid_headers:
        assert h.lower() not in a.headers, f"{what}: answer carries a {h} header: {a.headers}"


def check_stream(s: Stream, exp: Expect, what: str) -> None:
    if s.dropped:
        assert exp.drop_ok, f"{what}: the connection was dropped without an answer"
        return
    assert s.answers or s.closed, f"{what}: no answer and no close within the timeout (the request hangs)"
    statuses = [a.status for a in s.answers]
    assert len(s.answers) <= exp.max_answers, \
        f"{what}: {len(s.answers)} answers {statuses} on one connection (a second request got through)"
    for i, a in enumerate(s.answers):
        check_answer(a, exp, what, closed_after=s.closed and i == len(s.answers) - 1)


def hop_request(t: Target, path: str, sign: str, *, http10: bool = False, node: str = "n1") -> Stream:
    ts = int(time.time())
    header = {"none": None, "wrong": f"{ts}.{'0' * 64}", "valid": hop_header(t.key, ts, "GET", path),
              "other_path": hop_header(t.key, ts, "GET", path.replace("master.m3u8", f"{t.rendition}/index.m3u8"))}[sign]
    head = f"GET {path} HTTP/1.{0 if http10 else 1}\r\nHost: x\r\n"
    if header is not None:
        head += f"{HOP_HEADER}: {header}\r\n"
    return wire.exchange(t.http_port(node), (head + "\r\n").encode("latin-1"))


# ---- what every case leaves behind -------------------------------------------------------------------

def check_nothing_leaked(t: Target, what: str) -> None:
    for where, a in t.seen:
        if a.headers.get("content-type", "").startswith(("video/", "application/octet-stream")):
            continue
        found = leaks(a.body, local_paths=t.local_paths())
        assert not found, f"{what} ({where}): the answer gives away {found}: {a.body[:300]!r}"


def check_nothing_lost(t: Target, nodes: list[str] | None = None) -> None:
    """The ready video's master playlist and segment are byte-identical to before, its record
    still ``ready`` at the same epoch (each case asks one node in turn; the last test all)."""
    for node in nodes or t.cluster.node_ids:
        base = t.url(node) + f"/v1/videos/{t.vid}/hls/"
        m = httpx.get(base + "master.m3u8", timeout=20)
        assert m.status_code == 200 and m.content == t.master, f"{node}: the master playlist changed: {m.status_code}"
        s = httpx.get(base + t.seg, timeout=20)
        assert s.status_code == 200 and s.content == t.seg_bytes, f"{node}: the segment changed: {s.status_code}"
        rec = httpx.get(t.url(node) + f"/v1/videos/{t.vid}", timeout=20).json()
        assert rec["state"] == "ready" and rec["epoch"] == t.epoch, rec


def check_every_node_healthy(t: Target) -> None:
    for node in t.cluster.node_ids:
        assert t.cluster.pid(node) is not None, f"{node} is not running"
        r = httpx.get(t.url(node) + "/healthz", timeout=HEALTH_TIMEOUT)
        assert r.status_code == 200, f"{node} /healthz {r.status_code}"
    assert t.cluster.pid("storage") is not None, "the embedded S3 server is not running"


def members_alive(t: Target) -> None:
    for node in t.cluster.node_ids:
        ms = httpx.get(t.url(node) + "/v1/cluster/members", timeout=HEALTH_TIMEOUT).json()["members"]
        states = {m["id"]: m["state"] for m in ms}
        for other in t.cluster.node_ids:
            assert states.get(other) == "alive", f"{node} sees {other} as {states.get(other)}: {states}"


def metric(t: Target, node: str, name: str, **labels: str) -> float:
    text = httpx.get(t.url(node) + "/metrics", timeout=HEALTH_TIMEOUT).text
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    full = f"{name}{{{lab}}}" if lab else name
    for line in text.splitlines():
        if line.startswith(full + " "):
            return float(line.split()[-1])
    return 0.0


def dropped(t: Target, node: str, reason: str) -> float:
    return metric(t, node, "shoal_gossip_dropped_total", reason=reason)
