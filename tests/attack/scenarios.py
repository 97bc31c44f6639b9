"""The attack suite's scenarios: the cases that are more than one request (``Scenario(fn, ...)``
runs ``scenario_<fn>``).  Each asserts its own expectation; run.run_case adds the common checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import socket
import time
from pathlib import Path

import httpx
import msgpack

from harness import wait_state
from membership import codec
from membership.messages import PING, Message

from . import wire
from .cases import Case, Expect
from .checks import Answer, error_shape, leaks
from .target import (DELETE_LAG, MEDIA_CODES, MEDIA_DEADLINE, MEDIA_GRACE, Target, check_answer, check_stream,
                     dropped, hop_request, members_alive, s3_client)

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
    mallory = f"mallory-{rng.randrange(1 << 30)}"
    key = t.gossip_mac_key
    if kind == "garbage":
        packets = [rng.randbytes(500) for _ in range(20)]
    elif kind == "truncated":
        packets = [rng.randbytes(10)]
    elif kind == "oversized":
        packets = [rng.randbytes(2000), rng.randbytes(65000)]
    elif kind == "bitflip":
        p = bytearray(wire.gossip_packet(key, _ping(mallory, 11), counter=1))
        p[len(p) // 3] ^= 0x10
        packets = [bytes(p)]
    elif kind == "undecodable":
        body = msgpack.packb(["not", "a", "packet"])
        packets = [body + hmac.new(key, body, hashlib.sha256).digest()]
    elif kind == "stale":  # an hour ago and an hour ahead: both far outside the window
        window = t.cluster.config.membership.packet_window
        assert window < 3600, window
        packets = [wire.gossip_packet(key, _ping(mallory, 12), counter=1,
                                      sent_at_ms=int((time.time() + shift) * 1000)) for shift in (-3600, 3600)]
    else:
        raise AssertionError(kind)
    before = dropped(t, "n1", reason)
    replies = wire.send_datagrams(port, packets, wait_reply=0.5)
    assert not replies, f"{case.name}: the node answered {len(replies)} datagrams"
    after = _wait_metric_grows(t, "n1", reason, before + len(packets) - 1)
    assert after >= before + len(packets), (f"{case.name}: shoal_gossip_dropped_total{{reason={reason!r}}} went "
                                            f"from {before} to {after} for {len(packets)} packets")
    members_alive(t)


def scenario_udp_replay(t: Target, case: Case) -> None:
    port = t.gossip_port("n1")
    packet = wire.gossip_packet(t.gossip_mac_key, _ping(f"mallory-{os.getpid()}", 21), counter=1)
    first = wire.send_datagrams(port, [packet], wait_reply=1.0)
    kinds = [wire.message_kind(t.gossip_mac_key, r) for r in first]
    assert "ack" in kinds, f"{case.name}: the authentic PING was not ACKed: {kinds}"
    before = dropped(t, "n1", "replayed")
    again = wire.send_datagrams(port, [packet], wait_reply=1.0)
    assert not again, f"{case.name}: the replayed PING was answered"
    assert _wait_metric_grows(t, "n1", "replayed", before) > before, f"{case.name}: replay not counted"


def _drops(t: Target, node: str) -> dict[str, float]:
    return {r: dropped(t, node, r) for r in codec.DROP_REASONS + ("blocked",)}


def _gossip_log(t: Target, node: str, last: int = 8) -> list[dict]:
    """The node's last gossip log lines (for failure messages)."""
    return [line for line in t.cluster.log_lines(node) if "gossip" in str(line.get("event", ""))][-last:]


def _boot_of(t: Target, node: str) -> int:
    """The boot id ``node`` draws for this run (its ``gossip_listening`` log line)."""
    boots = [line["boot"] for line in t.cluster.log_lines(node) if line.get("event") == "gossip_listening"]
    assert boots, f"{node} logged no gossip_listening line with its boot id"
    return boots[-1]


def _n2_packets_accepted(t: Target, seconds: float) -> tuple[float, float]:
    """n1's refusals of n2-shaped traffic (`replayed`, `stale`) during ``seconds``; and
    n1's view of n2 must stay alive throughout."""
    before = (dropped(t, "n1", "replayed"), dropped(t, "n1", "stale"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        members_alive(t)
        time.sleep(0.5)
    after = (dropped(t, "n1", "replayed"), dropped(t, "n1", "stale"))
    return after[0] - before[0], after[1] - before[1]


def scenario_udp_far_future(t: Target, case: Case) -> None:
    """A key holder claims n2's name with the largest counter, under n2's real boot id (read
    from n2's log) and under a made-up one, stamped now and at the window's far edge.  Under
    wire version 1 one such packet raised n2's mark and silenced n2; now it may refuse only
    exact copies of itself, so n2 must stay alive everywhere and n1 refuse none of its packets."""
    port, key = t.gossip_port("n1"), t.gossip_mac_key
    window = t.cluster.config.membership.packet_window
    top = 2 ** 32 - 1  # the largest counter the codec accepts
    real_boot = _boot_of(t, "n2")
    # three distinct names (sender, boot, counter): each is new to n1
    forged = [wire.gossip_packet(key, Message(PING, "n2", 31 + i, "n1"), counter=counter, boot=boot,
                                 sent_at_ms=int((time.time() + shift) * 1000))
              for i, (boot, counter, shift) in enumerate([(real_boot, top, 0.0), (real_boot ^ 0x5A5A5A5A, top, 0.0),
                                                          (real_boot, top - 1, window - 5.0)])]
    before = dropped(t, "n1", "replayed")
    wire.send_datagrams(port, forged, wait_reply=0.3)
    # the forgeries themselves are authentic, fresh and new: accepted once, then only their copies refused
    again = wire.send_datagrams(port, forged[:1], wait_reply=0.3)
    assert not again, f"{case.name}: a copy of the forged packet was answered"
    got = _wait_metric_grows(t, "n1", "replayed", before)
    assert got == before + 1, (f"{case.name}: the copy of the forged packet was refused {got - before:.0f} times "
                               f"(not exactly once); n1 drops: {_drops(t, 'n1')}; n1 log: {_gossip_log(t, 'n1')}")
    replayed, stale = _n2_packets_accepted(t, 4.0)
    assert replayed == 0 and stale == 0, (
        f"{case.name}: after a forged far-future counter n1 refused {replayed:.0f} packets as replayed and "
        f"{stale:.0f} as stale in 4 s: the real member is being silenced; n1 log: {_gossip_log(t, 'n1')}")
    assert _boot_of(t, "n2") == real_boot, f"{case.name}: n2 restarted during the case"
    members_alive(t)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _stream_ping_answered(t: Target, node: str = "n1") -> bool:
    """A key holder's fallback ping over gossip TCP (sealed as the nodes seal it) gets its ACK."""
    key, cfg = t.gossip_mac_key, t.cluster.config.membership
    ping = codec.Encoder(key).encode(Message(PING, f"keyholder-{os.getpid()}", 77, node))
    with socket.create_connection(("127.0.0.1", t.gossip_port(node)), timeout=1.0) as s:
        s.sendall(wire.gossip_frame(key, ping))
        reply = wire.read_frame(s, key, limit=codec.push_pull_limit(cfg.max_members),
                                timeout=cfg.stream_timeout + 1.0)
    return reply is not None and wire.message_kind(key, reply) == "ack"


def scenario_tcp_idle(t: Target, case: Case) -> None:
    """64 idle connections: the node holds at most ``max_streams``, closes the rest at once and
    the held ones at the header deadline; a key holder arriving meanwhile still gets in."""
    cfg = t.cluster.config.membership
    pid = t.cluster.pid("n1")
    assert pid is not None
    rss0 = rss_bytes(pid)
    refused0, timeouts0 = dropped(t, "n1", "stream_refused"), dropped(t, "n1", "stream_timeout")
    socks: list[socket.socket] = []
    refused = 0
    try:
        t0 = time.monotonic()
        for _ in range(64):
            try:
                socks.append(socket.create_connection(("127.0.0.1", t.gossip_port("n1")), timeout=1.0))
            except OSError:
                refused += 1
        time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
        open_at_half = sum(not wire.is_closed(s) for s in socks)
        answered = _stream_ping_answered(t)  # the idle ones are past the grace: one gives way
        time.sleep(max(0.0, t0 + cfg.header_timeout + 1.0 - time.monotonic()))
        open_after_deadline = sum(not wire.is_closed(s) for s in socks)
        rss1 = rss_bytes(pid)
    finally:
        for s in socks:
            s.close()
    assert open_at_half <= cfg.max_streams, (f"{case.name}: {open_at_half} of 64 idle connections still open "
                                             f"after 0.5 s, more than max_streams {cfg.max_streams} ({refused} refused)")
    assert answered, f"{case.name}: a key holder's fallback ping got no ACK while idle connections held the slots"
    assert open_after_deadline == 0, (f"{case.name}: {open_after_deadline} idle connections still open "
                                      f"{cfg.header_timeout + 1.0:.1f} s after they connected (header deadline "
                                      f"{cfg.header_timeout} s)")
    assert dropped(t, "n1", "stream_refused") > refused0, f"{case.name}: no stream_refused counted"
    assert dropped(t, "n1", "stream_timeout") > timeouts0, f"{case.name}: no stream_timeout counted"
    assert rss1 - rss0 < 50 * 1024 * 1024, f"{case.name}: RSS grew by {(rss1 - rss0) >> 20} MiB"
    members_alive(t)


def scenario_tcp_frame(t: Target, case: Case, kind: str) -> None:
    """Send one hostile frame start and wait for the close, with nothing answered.  Each kind is
    refused for its own reason, counted in shoal_gossip_dropped_total."""
    rng = random.Random(case.name)
    cfg = t.cluster.config.membership
    key = t.gossip_mac_key
    limit_bytes = codec.push_pull_limit(cfg.max_members)
    slack = 1.0  # loopback plus a loaded machine
    if kind == "huge":  # a key holder's valid header announcing 4 GiB - 1, and no body at all
        data, reason, limit = wire.frame_header(key, 0xFFFFFFFF), "stream_oversized", slack
        assert 0xFFFFFFFF > limit_bytes
    elif kind == "forged_huge":  # the same header without the key: no tag, no allocation
        data, reason, limit = wire.frame_header(b"k" * 32, 0xFFFFFFFF), "stream_forged", slack
    elif kind == "garbage":
        data, reason, limit = rng.randbytes(100), "stream_garbage", slack
        assert data[:2] != b"SG"
    elif kind == "partial":  # the first 20 of the 39 header bytes, then silence
        # closed by the header deadline, not the later deadline of the whole exchange
        assert cfg.header_timeout < cfg.stream_timeout, cfg
        data, reason, limit = wire.frame_header(key, 1000)[:20], "stream_timeout", cfg.stream_timeout
    elif kind == "header_replayed":  # a header copied off the wire cannot open a second body
        packet = codec.Encoder(key).encode(_ping(f"keyholder-{os.getpid()}", 78))
        frame = wire.gossip_frame(key, packet)
        with socket.create_connection(("127.0.0.1", t.gossip_port("n1")), timeout=1.0) as s:
            s.sendall(frame)
            first = wire.read_frame(s, key, limit=limit_bytes, timeout=cfg.stream_timeout + slack)
        assert first is not None and wire.message_kind(key, first) == "ack", f"{case.name}: the genuine frame got no ACK"
        data, reason, limit = frame, "stream_replayed", slack
    else:
        raise AssertionError(kind)
    before = dropped(t, "n1", reason)
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
    after = _wait_metric_grows(t, "n1", reason, before)
    assert after > before, f"{case.name}: shoal_gossip_dropped_total{{reason={reason!r}}} stayed at {before}"
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
