"""The attack runner: one prepared cluster (:class:`Target`), one function per kind of request.

:func:`prepare` uploads the video every case must leave intact (and a second one that the delete
case removes), snapshots its master playlist and a segment, writes a decoy object for the storage
cases, and uploads the hostile media (they process while the other cases run).
:func:`run_case` sends one case and checks its answer, then what every case must leave behind:

* nothing leaked: no traceback text, no local path, no Python exception name in any body;
* nothing lost: the ready video's master playlist and segment are byte-identical to before;
* every node healthy: its process alive and ``/healthz`` 200.

Every socket read has a short timeout; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgpack

import media
from harness import Cluster, upload, wait_state
from membership import codec
from membership.messages import PING, Message
from node.process import ffmpeg_exe

from . import wire
from .cases import Case, Expect, Hop, Http, Raw, Scenario
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


# ---- kinds of requests -----------------------------------------------------------------------------

def run_raw(t: Target, case: Case, req: Raw) -> None:
    text = t.fill(req.data)
    data = random.Random(case.name).randbytes(4096) if text == "@RANDOM4096@" else text.encode("latin-1")
    if req.pieces > 1:
        step = max(1, len(data) // req.pieces)
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
    else:
        pieces = [data]
    s = wire.exchange(t.http_port(req.node), pieces, pause=req.pause)
    for a in s.answers:
        t.note(case.name, a)
    check_stream(s, case.expect, case.name)


def _auth(t: Target, who: str) -> dict[str, str]:
    return {"none": {}, "token": {"Authorization": f"Bearer {t.cluster.token}"},
            "wrong": {"Authorization": "Bearer not-the-token"}}[who]


def run_http(t: Target, case: Case, req: Http) -> None:
    headers = {**_auth(t, req.auth), **dict(req.headers)}
    r = httpx.request(req.method, t.url(req.node) + t.fill(req.path), headers=headers, content=req.body or None,
                      timeout=20)
    check_answer(t.note(case.name, Answer(r.status_code, dict(r.headers), r.content)), case.expect, case.name)


def hop_request(t: Target, path: str, sign: str, *, http10: bool = False, node: str = "n1") -> Stream:
    ts = int(time.time())
    header = {"none": None, "wrong": f"{ts}.{'0' * 64}", "valid": hop_header(t.key, ts, "GET", path),
              "other_path": hop_header(t.key, ts, "GET", path.replace("master.m3u8", f"{t.rendition}/index.m3u8"))}[sign]
    head = f"GET {path} HTTP/1.{0 if http10 else 1}\r\nHost: x\r\n"
    if header is not None:
        head += f"{HOP_HEADER}: {header}\r\n"
    return wire.exchange(t.http_port(node), (head + "\r\n").encode("latin-1"))


def run_hop(t: Target, case: Case, req: Hop) -> None:
    s = hop_request(t, "/v1/internal/objects/" + t.fill(req.path), req.sign, http10=req.http10)
    for a in s.answers:
        t.note(case.name, a)
    check_stream(s, case.expect, case.name)


def run_case(t: Target, case: Case) -> None:
    """Send ``case`` and check everything; a node the case took down is restarted before the
    failure is raised, so the next case starts from a whole cluster again."""
    try:
        _run_and_check(t, case)
    except BaseException:
        revive(t)
        raise


def revive(t: Target) -> list[str]:
    """Restart every node (and the storage server) that is dead or does not answer /healthz."""
    revived = []
    c = t.cluster
    if c.pid("storage") is None:
        c.start_storage()
        revived.append("storage")
    for node in c.node_ids:
        try:
            ok = c.pid(node) is not None and httpx.get(t.url(node) + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            c.restart(node)
            revived.append(node)
    return revived


def _run_and_check(t: Target, case: Case) -> None:
    t.seen.clear()
    req = case.request
    if isinstance(req, Raw):
        run_raw(t, case, req)
    elif isinstance(req, Http):
        run_http(t, case, req)
    elif isinstance(req, Hop):
        run_hop(t, case, req)
    else:
        SCENARIOS[req.fn](t, case, *req.args)
    check_nothing_leaked(t, case.name)
    check_nothing_lost(t, [t.cluster.node_ids[t.cases_run % len(t.cluster.node_ids)]])
    t.cases_run += 1
    check_every_node_healthy(t)


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


# ---- scenarios ---------------------------------------------------------------------------------------

def scenario_range_paths_agree(t: Target, case: Case, value: str, statuses: tuple[int, ...]) -> None:
    path = f"/v1/videos/{t.vid}/hls/{t.seg}"
    got = {}
    for lane, version in (("fast lane", "HTTP/1.1"), ("hypercorn", "HTTP/1.0")):
        s = wire.exchange(t.http_port("n1"), f"GET {path} {version}\r\nHost: x\r\nRange: {value}\r\n\r\n".encode())
        what = f"{case.name} via the {lane}"
        assert len(s.answers) == 1, f"{what}: {len(s.answers)} answers (dropped: {s.dropped})"
        a = t.note(what, s.answers[0])
        assert a.status in statuses, f"{what}: status {a.status}, expected {statuses}: {a.body[:200]!r}"
        if a.status == 416:
            assert (error_shape(a.body) or ("",))[0] == "bad_range", f"{what}: {a.body[:200]!r}"
        if a.status == 200:
            assert a.body == t.seg_bytes, f"{what}: 200 with other bytes than the segment"
        got[lane] = a.status
    assert len(set(got.values())) == 1, f"{case.name}: the two paths disagree: {got}"


def scenario_tus_patch(t: Target, case: Case, length: int, offset: str, hdrs: tuple, body: bytes) -> None:
    c = t.cluster
    r = httpx.post(t.url("n1") + "/v1/uploads", timeout=10,
                   headers=c.headers({"Tus-Resumable": "1.0.0", "Upload-Length": str(length)}))
    assert r.status_code == 201, r.text
    loc = r.headers["location"]
    headers = c.headers({"Tus-Resumable": "1.0.0", "Upload-Offset": offset,
                         "Content-Type": "application/offset+octet-stream", **dict(hdrs)})
    try:
        p = httpx.patch(t.url("n2") + loc, content=body, headers=headers, timeout=20)
        check_answer(t.note(case.name, Answer(p.status_code, dict(p.headers), p.content)), case.expect, case.name)
    finally:
        httpx.delete(t.url("n1") + loc, headers=c.headers({"Tus-Resumable": "1.0.0"}), timeout=20)


def scenario_hop_valid(t: Target, case: Case) -> None:
    s = hop_request(t, f"/v1/internal/objects/{t.vid}/out/{t.epoch}/master.m3u8", "valid")
    assert len(s.answers) == 1, f"{case.name}: {s}"
    a = t.note(case.name, s.answers[0])
    assert a.status == 200 and a.body == t.master, f"{case.name}: {a.status} {a.body[:200]!r}"


def scenario_list_cost(t: Target, case: Case, state: str) -> None:
    t0 = time.monotonic()
    r = httpx.get(t.url("n1") + f"/v1/videos?state={state}&limit=1000", timeout=20)
    took = time.monotonic() - t0
    a = t.note(case.name, Answer(r.status_code, dict(r.headers), r.content))
    assert took < 2.0, f"{case.name}: took {took:.2f} s"
    if r.status_code == 200:
        doc = r.json()
        assert isinstance(doc.get("videos"), list) and "next" in doc, doc
    else:
        check_answer(a, Expect((401, 403)), case.name)


def _http_or_refused(method: str, url: str, **kw) -> httpx.Response | None:
    try:
        return httpx.request(method, url, timeout=5, **kw)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return None  # the port is closed or the server hangs up: no access


def _object(t: Target, key: str) -> bytes | None:
    try:
        return s3_client(t.cluster).get_object(Bucket=t.cluster.bucket, Key=key)["Body"].read()
    except Exception as e:  # botocore's NoSuchKey / 404
        if "NoSuchKey" in str(e) or "404" in str(e) or "Not Found" in str(e):
            return None
        raise


def scenario_storage_port(t: Target, case: Case, port_name: str, method: str, path: str) -> None:
    port = t.storage_ports.get(port_name)
    if port is None:
        assert port_name != "s3", "the S3 port is missing"
        return  # the side port is not opened at all: nothing to reach
    base = f"http://127.0.0.1:{port}"
    path = t.fill(path)
    what = f"{case.name} ({port_name} port {port})"
    if method == "SIGNED-WRONG":
        from botocore.exceptions import ClientError
        try:
            s3_client(t.cluster, "AKIAWRONGWRONGWRONG", "wrong-secret").list_objects_v2(Bucket=t.cluster.bucket)
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (401, 403), e.response
            return
        raise AssertionError(f"{what}: listing with wrong credentials succeeded")
    if method == "ASSIGN":
        r = _http_or_refused("GET", base + path)
        if r is None or not r.is_success:
            return
        doc = r.json()
        if not doc.get("fid") or not doc.get("url"):
            return
        auth = {"Authorization": f"BEARER {doc['auth']}"} if doc.get("auth") else {}
        w = _http_or_refused("PUT", f"http://{doc['url']}/{doc['fid']}", headers=auth,
                             files={"file": ("x.txt", b"written without credentials")})
        assert w is None or not w.is_success, \
            f"{what}: the master assigned {doc['fid']} and the volume stored our bytes: {w.status_code} {w.text[:200]}"
        return
    headers = {"Accept": "application/json"}
    kw = {"content": b"written without credentials"} if method == "PUT" else {}
    r = _http_or_refused(method, base + path, headers=headers, **kw)
    problems = []
    if r is not None:
        if r.is_success or r.is_redirect:
            problems.append(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        if t.decoy_body in r.content:
            problems.append("the decoy's bytes came back")
    if method == "PUT":
        key = path.split("/", 2)[2] if port_name == "s3" else path.split("/", 3)[3]
        if _object(t, key) is not None:
            problems.append(f"the object {key} now exists")
    if method == "DELETE" and _object(t, t.decoy_key) != t.decoy_body:
        problems.append("the decoy is gone or changed")
        # put it back, so the next case starts from the same bucket
        s3_client(t.cluster).put_object(Bucket=t.cluster.bucket, Key=t.decoy_key, Body=t.decoy_body)
    assert not problems, f"{what}: " + "; ".join(problems)


def _ping(sender: str, seq: int) -> Message:
    return Message(PING, sender, seq, "n1")


def _wait_metric_grows(t: Target, node: str, reason: str, before: float, timeout: float = 3.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        now = dropped(t, node, reason)
        if now > before or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def scenario_udp_rejected(t: Target, case: Case, kind: str, reason: str) -> None:
    port = t.gossip_port("n1")
    rng = random.Random(case.name)
    now_us = int(time.time() * 1_000_000)
    mallory = f"mallory-{rng.randrange(1 << 30)}"
    if kind == "garbage":
        packets = [rng.randbytes(500) for _ in range(20)]
    elif kind == "truncated":
        packets = [rng.randbytes(10)]
    elif kind == "oversized":
        packets = [rng.randbytes(2000), rng.randbytes(65000)]
    elif kind == "bitflip":
        p = bytearray(wire.gossip_packet(t.gossip_mac_key, _ping(mallory, 11), counter=now_us))
        p[len(p) // 3] ^= 0x10
        packets = [bytes(p)]
    elif kind == "undecodable":
        body = msgpack.packb(["not", "a", "packet"])
        import hashlib
        import hmac
        packets = [body + hmac.new(t.gossip_mac_key, body, hashlib.sha256).digest()]
    elif kind == "stale":
        packets = [wire.gossip_packet(t.gossip_mac_key, _ping(mallory, 12), counter=now_us,
                                      timestamp_ms=int((time.time() - 3600) * 1000))]
    else:
        raise AssertionError(kind)
    before = dropped(t, "n1", reason)
    replies = wire.send_datagrams(port, packets, wait_reply=0.5)
    assert not replies, f"{case.name}: the node answered {len(replies)} datagrams"
    after = _wait_metric_grows(t, "n1", reason, before)
    assert after > before, f"{case.name}: shoal_gossip_dropped_total{{reason={reason!r}}} stayed at {before}"
    members_alive(t)


def scenario_udp_replay(t: Target, case: Case) -> None:
    port = t.gossip_port("n1")
    packet = wire.gossip_packet(t.gossip_mac_key, _ping(f"mallory-{os.getpid()}", 21),
                                counter=int(time.time() * 1_000_000))
    first = wire.send_datagrams(port, [packet], wait_reply=1.0)
    kinds = [(wire.open_message(t.gossip_mac_key, r) or [None] * 4)[3] for r in first]
    assert "ack" in kinds, f"{case.name}: the authentic PING was not ACKed: {kinds}"
    before = dropped(t, "n1", "replayed")
    again = wire.send_datagrams(port, [packet], wait_reply=1.0)
    assert not again, f"{case.name}: the replayed PING was answered"
    assert _wait_metric_grows(t, "n1", "replayed", before) > before, f"{case.name}: replay not counted"


def scenario_udp_far_future(t: Target, case: Case) -> None:
    port = t.gossip_port("n1")
    packet = wire.gossip_packet(t.gossip_mac_key, Message(PING, "n2", 31, "n1"), counter=2 ** 62)
    wire.send_datagrams(port, [packet], wait_reply=0.3)
    time.sleep(0.5)
    before = dropped(t, "n1", "replayed")
    time.sleep(3.0)
    after = dropped(t, "n1", "replayed")
    assert after == before, (f"{case.name}: n1 dropped {after - before:.0f} of n2's packets as replayed in 3 s "
                             "after one forged far-future counter: the real member is silenced")
    members_alive(t)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def scenario_tcp_idle(t: Target, case: Case) -> None:
    pid = t.cluster.pid("n1")
    assert pid is not None
    rss0 = rss_bytes(pid)
    socks: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(64):
            try:
                socks.append(socket.create_connection(("127.0.0.1", t.gossip_port("n1")), timeout=1.0))
            except OSError:
                refused += 1
        time.sleep(0.5)
        still_open = sum(not wire.is_closed(s) for s in socks)
        rss1 = rss_bytes(pid)
    finally:
        for s in socks:
            s.close()
    assert still_open <= 32, f"{case.name}: {still_open} of 64 idle connections still open after 0.5 s ({refused} refused)"
    assert rss1 - rss0 < 50 * 1024 * 1024, f"{case.name}: RSS grew by {(rss1 - rss0) >> 20} MiB"
    members_alive(t)


def scenario_tcp_frame(t: Target, case: Case, kind: str) -> None:
    rng = random.Random(case.name)
    data = {"huge": wire.GOSSIP_FRAME.pack(0xFFFFFFFF),
            "garbage": wire.GOSSIP_FRAME.pack(100) + rng.randbytes(100),
            "partial": wire.GOSSIP_FRAME.pack(codec.MAX_STREAM) + rng.randbytes(10)}[kind]
    limit = 5.0 if kind == "partial" else 2.0
    with socket.create_connection(("127.0.0.1", t.gossip_port("n1")), timeout=1.0) as s:
        s.sendall(data)
        s.settimeout(limit)
        t0 = time.monotonic()
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except socket.timeout:
            raise AssertionError(f"{case.name}: still open after {limit} s") from None
        except ConnectionResetError:
            pass
        took = time.monotonic() - t0
    assert not got, f"{case.name}: the node answered {len(got)} bytes"
    assert took <= limit, took
    members_alive(t)


def scenario_media_fails(t: Target, case: Case, name: str) -> None:
    entry = t.media[name]
    if entry[0] == "refused":  # refused at the door: a clean 4xx is as good
        check_answer(t.note(case.name, entry[1]), Expect((400, 413, 415, 422)), case.name)
        return
    _, vid, uploaded_at = entry
    left = uploaded_at + MEDIA_DEADLINE + MEDIA_GRACE - time.monotonic()
    try:
        rec = wait_state(t.cluster, "n1", vid, ("failed", "ready"), timeout=max(0.5, left))
    except AssertionError as e:
        raise AssertionError(f"{case.name}: not failed within {MEDIA_DEADLINE:.0f} s of the upload: {e}") from None
    finally:  # a runaway attempt (e.g. 10 hours of frames) stops when its video is deleted
        httpx.delete(t.url("n1") + f"/v1/videos/{vid}", headers=t.cluster.headers(), timeout=20)
    assert rec["state"] == "failed", f"{case.name}: the hostile upload became {rec['state']}"
    assert rec.get("attempts") == 1, f"{case.name}: attempts {rec.get('attempts')} (retried as an infrastructure error)"
    err = rec.get("error") or {}
    assert err.get("code") in MEDIA_CODES, f"{case.name}: error {err}"
    found = leaks(json.dumps(err), local_paths=t.local_paths())
    assert not found, f"{case.name}: the error gives away {found}: {err}"


def scenario_partial_heads(t: Target, case: Case) -> None:
    socks: list[socket.socket] = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", t.http_port("n1")), timeout=1.0)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        t0 = time.monotonic()
        r = httpx.get(t.url("n1") + "/healthz", timeout=5)
        took = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    assert r.status_code == 200 and took < 2.0, f"{case.name}: /healthz {r.status_code} after {took:.2f} s"


def scenario_delete_stops_serving(t: Target, case: Case) -> None:
    c, vid = t.cluster, t.victim
    rec = httpx.get(t.url("n1") + f"/v1/videos/{vid}", timeout=20).json()
    epoch = rec["epoch"]
    paths = ["master.m3u8", t.seg]
    for node in c.node_ids:  # every node has served it (caches and ready records are warm)
        for p in paths:
            assert httpx.get(t.url(node) + f"/v1/videos/{vid}/hls/{p}", timeout=20).status_code == 200
    r = httpx.delete(t.url("n1") + f"/v1/videos/{vid}", headers=c.headers(), timeout=20)
    answered = time.monotonic()
    assert r.status_code == 202, r.text
    time.sleep(max(0.0, answered + DELETE_LAG - time.monotonic()))
    for node in c.node_ids:
        for p in paths:
            g = httpx.get(t.url(node) + f"/v1/videos/{vid}/hls/{p}", timeout=20)
            a = t.note(f"{node} {p}", Answer(g.status_code, dict(g.headers), g.content))
            check_answer(a, Expect((404,), ("not_found",)), f"{case.name}: {node} GET {p} {DELETE_LAG:.0f} s after DELETE")
            s = hop_request(t, f"/v1/internal/objects/{vid}/out/{epoch}/{p}", "valid", node=node)
            check_stream(s, Expect((404,), ("not_found",)), f"{case.name}: {node} signed hop for {p} after DELETE")


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}
