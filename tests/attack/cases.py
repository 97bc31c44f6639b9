"""The attack table: every hostile input the suite sends, and what a node must answer.

A case is ``Case(name, category, request, expect)``.  ``request`` is one of:

* :class:`Raw`: bytes on a fresh TCP connection to a node's HTTP port (``@VID@``, ``@EPOCH@``,
  ``@SEG@``, ``@TOKEN@``, ``@MISSING@``, ``@VIDUP@`` are filled in by the runner);
* :class:`Http`: one request with the token, a wrong token or none;
* :class:`Hop`: a node-to-node object request, signed right, wrong or not at all;
* :class:`Scenario`: a named sequence the runner knows (tus, media, gossip, storage, delete).

``expect`` is an :class:`Expect` (statuses, error codes, how many answers) or, for scenarios, the
sentence the scenario asserts.  Whatever the case, the runner then checks that nothing leaked,
nothing was lost and every node is healthy (run.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRLF = "\r\n"


@dataclass(frozen=True)
class Expect:
    """A clean answer.

    ``statuses``: allowed statuses; every answer >= 400 must carry the error shape with a code
    in ``codes`` (any code when None).  ``drop_ok``: the server may close without answering
    (garbage on a raw socket), and a bodiless 4xx/5xx refusal followed by a close counts as such
    a drop.  ``max_answers``: more answers on one connection than this is a desync (smuggling).
    ``forbid_headers``: answer headers that must not appear (injection).
    """

    statuses: tuple[int, ...]
    codes: tuple[str, ...] | None = None
    drop_ok: bool = False
    max_answers: int = 1
    forbid_headers: tuple[str, ...] = ()

    def describe(self) -> str:
        s = "/".join(map(str, self.statuses))
        if self.codes:
            s += " " + "/".join(f"`{c}`" for c in self.codes)
        if self.drop_ok:
            s += ", or dropped"
        if self.max_answers == 1:
            s += "; one answer only"
        if self.forbid_headers:
            s += "; no " + ", ".join(self.forbid_headers) + " header"
        return s


@dataclass(frozen=True)
class Raw:
    data: str  # latin-1 text with placeholders
    node: str = "n1"
    pieces: int = 1  # sent in this many pieces, ``pause`` apart (slow heads)
    pause: float = 0.0
    note: str = ""

    def describe(self) -> str:
        if self.note:
            return self.note
        line = self.data.split("\n", 1)[0].rstrip("\r")
        return f"raw `{line[:70]}`" + ("…" if len(line) > 70 else "")


@dataclass(frozen=True)
class Http:
    method: str
    path: str
    auth: str = "none"  # none | token | wrong
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    node: str = "n1"

    def describe(self) -> str:
        who = {"none": "no token", "token": "token", "wrong": "wrong token"}[self.auth]
        extra = "".join(f", {k}: {v[:30]}" for k, v in self.headers)
        return f"`{self.method} {self.path[:60]}` ({who}{extra})"


@dataclass(frozen=True)
class Hop:
    path: str  # after /v1/internal/objects/
    sign: str  # none | wrong | valid | other_path
    http10: bool = False  # through hypercorn rather than the fast lane

    def describe(self) -> str:
        how = {"none": "unsigned", "wrong": "wrong signature", "valid": "signed",
               "other_path": "signed for another path"}[self.sign]
        return f"`GET /v1/internal/objects/{self.path}` {how}" + (" (HTTP/1.0)" if self.http10 else "")


@dataclass(frozen=True)
class Scenario:
    fn: str  # a function of run.py: scenario_<fn>
    text: str
    args: tuple = ()

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    request: Raw | Http | Hop | Scenario
    expect: Expect | str

    def describe_expect(self) -> str:
        return self.expect if isinstance(self.expect, str) else self.expect.describe()


def _get(target: str, *headers: str, version: str = "HTTP/1.1") -> str:
    return f"GET {target} {version}{CRLF}Host: x{CRLF}" + "".join(h + CRLF for h in headers) + CRLF


SEG_PATH = "/v1/videos/@VID@/hls/@SEG@"
MASTER_PATH = "/v1/videos/@VID@/hls/master.m3u8"
SMUGGLED = f"GET /healthz HTTP/1.1{CRLF}Host: x{CRLF}{CRLF}"
NOT_FOUND = Expect((404,), ("not_found",))
NOT_FOUND_OR_BAD = Expect((400, 404))
REFUSED = Expect((400,), drop_ok=True)
TUS = ("Tus-Resumable", "1.0.0")

CASES: list[Case] = []


def case(name: str, category: str, request, expect) -> None:
    CASES.append(Case(name, category, request, expect))


# ---- media (first: they were uploaded last in prepare and each is deleted after its case) -----------
M = "media"
MEDIA_FAILS = "`failed` within 30 s of the upload, attempts 1, code `undecodable`/`media_limit`, message without path"
for name, what in [("media_random_bytes", "64 KiB of random bytes"),
                   ("media_truncated_mp4", "the first half of an MP4 whose index is at the end"),
                   ("media_ffconcat_local_paths", "an ffconcat file naming /etc/passwd and the node's secrets"),
                   ("media_hls_playlist_urls", "an HLS playlist naming file:///etc/passwd and an http:// URL"),
                   ("media_huge_png", "a PNG declaring 65,535 x 65,535 pixels"),
                   ("media_mkv_10h_gap", "an MKV with two frames 10 hours apart"),
                   ("media_bare_h263", "a bare H.263 elementary stream")]:
    case(name, M, Scenario("media_fails", what, (name,)), MEDIA_FAILS)

# ---- HTTP parsing --------------------------------------------------------------------------------
H = "http-parsing"
case("garbage_bytes", H, Raw("@RANDOM4096@", note="4 KiB of random bytes"), REFUSED)
case("tls_client_hello", H, Raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 64,
                                note="a TLS ClientHello on the plain port"), REFUSED)
case("request_line_70k", H, Raw(_get("/" + "a" * 70_000), note="a 70 KB request target"),
     Expect((400, 414, 431), drop_ok=True))
case("head_200_headers_of_1k", H, Raw(_get("/healthz", *[f"X-Pad-{i}: {'a' * 1000}" for i in range(200)]),
                                      note="200 header fields of 1 KB"), Expect((400, 431), drop_ok=True))
case("ten_thousand_tiny_headers", H, Raw(_get("/healthz", *["a: b"] * 10_000), note="10,000 header fields (60 KB)"),
     Expect((200, 400, 431), drop_ok=True))
case("method_brew", H, Raw(f"BREW /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}{CRLF}"),
     Expect((405, 501), ("method_not_allowed", "not_implemented")))
case("method_trace", H, Raw(f"TRACE /healthz HTTP/1.1{CRLF}Host: x{CRLF}{CRLF}"),
     Expect((405, 501), ("method_not_allowed", "not_implemented")))
case("method_5000_chars", H, Raw("A" * 5000 + f" /healthz HTTP/1.1{CRLF}Host: x{CRLF}{CRLF}", note="a 5,000-character method"),
     Expect((400, 405, 431, 501), drop_ok=True))
case("method_lowercase", H, Raw(f"get /healthz HTTP/1.1{CRLF}Host: x{CRLF}{CRLF}"),
     Expect((200, 400, 405, 501), drop_ok=True))
case("http_version_9_9", H, Raw(_get("/healthz", version="HTTP/9.9")), Expect((200, 400, 505), drop_ok=True))
case("http_0_9_request", H, Raw(f"GET /healthz{CRLF}{CRLF}"), REFUSED)
case("nul_in_header", H, Raw(_get("/healthz", "X-A: a\x00b"), note="a header value with a NUL byte"), REFUSED)
case("lone_cr_in_header", H, Raw(_get("/healthz", "X-A: a\rb"), note="a header value with a lone CR"), REFUSED)
case("space_before_colon", H, Raw(_get("/healthz", "X-Filename : a"), note="`X-Filename : a` (space before the colon)"), REFUSED)
case("obs_fold_header", H, Raw(_get("/healthz", "X-A: a", " folded"), note="an obs-fold continuation line"), Expect((200, 400), drop_ok=True))
case("crlf_injection_in_path", H, Raw(_get("/v1/videos/%0d%0aSet-Cookie:%20x=1")),
     Expect((404,), ("not_found",), forbid_headers=("set-cookie",)))
case("bare_lf_head", H, Raw(f"GET {MASTER_PATH} HTTP/1.1\nHost: x\n\n",
                            note="a playlist GET whose head ends lines with bare LF"),
     Expect((200, 400), drop_ok=True))
case("bare_lf_hides_content_length", H,
     Raw(f"GET {SEG_PATH} HTTP/1.1{CRLF}Host: x{CRLF}X-A: b\nContent-Length: {len(SMUGGLED)}{CRLF}{CRLF}" + SMUGGLED,
         note="segment GET with `X-A: b\\nContent-Length: 37`, then 37 bytes that are a request"),
     Expect((200, 400), drop_ok=True))

# ---- request smuggling ---------------------------------------------------------------------------
S = "smuggling"
case("cl_te", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Content-Length: 5{CRLF}"
                     f"Transfer-Encoding: chunked{CRLF}{CRLF}0{CRLF}{CRLF}" + SMUGGLED,
                     note="CL.TE: Content-Length 5 and chunked, then a request"),
     Expect((400, 401, 411), drop_ok=True))
case("te_cl", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Transfer-Encoding: chunked{CRLF}"
                     f"Content-Length: 4{CRLF}{CRLF}{len(SMUGGLED):x}{CRLF}{SMUGGLED}{CRLF}0{CRLF}{CRLF}",
                     note="TE.CL: chunked and Content-Length 4, a request inside the chunk"),
     Expect((400, 401, 411), drop_ok=True))
case("cl_te_on_playback", S, Raw(f"GET {SEG_PATH} HTTP/1.1{CRLF}Host: x{CRLF}Content-Length: {5 + len(SMUGGLED)}{CRLF}"
                                 f"Transfer-Encoding: chunked{CRLF}{CRLF}0{CRLF}{CRLF}" + SMUGGLED,
                                 note="segment GET with Content-Length and chunked, then a request"),
     Expect((200, 400), drop_ok=True))
case("duplicate_content_length", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Content-Length: 5{CRLF}"
                                        f"Content-Length: 6{CRLF}{CRLF}hello!", note="Content-Length 5 and Content-Length 6"), REFUSED)
case("te_xchunked", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Transfer-Encoding: xchunked{CRLF}{CRLF}", note="`Transfer-Encoding: xchunked`"),
     Expect((400, 501), drop_ok=True))
case("te_chunked_identity", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}"
                                   f"Transfer-Encoding: chunked, identity{CRLF}{CRLF}0{CRLF}{CRLF}", note="`Transfer-Encoding: chunked, identity`"),
     Expect((400, 501), drop_ok=True))
case("te_space_before_colon", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Transfer-Encoding : chunked"
                                     f"{CRLF}{CRLF}0{CRLF}{CRLF}", note="`Transfer-Encoding : chunked` (space before the colon)"), REFUSED)
case("chunked_garbage_size", S, Raw(f"POST /v1/uploads HTTP/1.1{CRLF}Host: x{CRLF}Authorization: Bearer @TOKEN@{CRLF}"
                                    f"Tus-Resumable: 1.0.0{CRLF}Upload-Length: 10{CRLF}"
                                    f"Content-Type: application/offset+octet-stream{CRLF}"
                                    f"Transfer-Encoding: chunked{CRLF}{CRLF}ZZZ{CRLF}hello{CRLF}0{CRLF}{CRLF}",
                                    note="tus creation-with-upload, chunked body with size `ZZZ`"),
     Expect((400, 411), drop_ok=True))
case("chunk_size_overflow", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Authorization: Bearer @TOKEN@{CRLF}"
                                   f"Transfer-Encoding: chunked{CRLF}{CRLF}{'f' * 40}{CRLF}hello{CRLF}",
                                   note="chunked body with a 40-digit hex chunk size"),
     Expect((400, 411), drop_ok=True))
case("negative_content_length", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Content-Length: -1{CRLF}{CRLF}", note="`Content-Length: -1`"),
     REFUSED)
case("content_length_plus_sign", S, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Content-Length: +5{CRLF}{CRLF}hello", note="`Content-Length: +5`"),
     REFUSED)

# ---- limits and tokens ---------------------------------------------------------------------------
A = "auth-and-limits"
case("upload_over_limit", A, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Authorization: Bearer @TOKEN@{CRLF}"
                                 f"Content-Length: 1000000000000000{CRLF}{CRLF}",
                                 note="POST /v1/videos with Content-Length 10^15 (token)"),
     Expect((413,), ("too_large",)))
case("content_length_30_digits", A, Raw(f"POST /v1/videos HTTP/1.1{CRLF}Host: x{CRLF}Authorization: Bearer @TOKEN@{CRLF}"
                                        f"Content-Length: {'9' * 30}{CRLF}{CRLF}",
                                        note="POST /v1/videos with a 30-digit Content-Length (token)"),
     Expect((400, 413), drop_ok=True))
case("upload_without_token", A, Http("POST", "/v1/videos", body=b"x"), Expect((401,), ("unauthorized",)))
case("upload_wrong_token", A, Http("POST", "/v1/videos", "wrong", body=b"x"), Expect((403,), ("forbidden",)))
case("upload_basic_auth", A, Http("POST", "/v1/videos", headers=(("Authorization", "Basic YTpi"),), body=b"x"),
     Expect((401,), ("unauthorized",)))
case("delete_without_token", A, Http("DELETE", "/v1/videos/@VID@"), Expect((401,), ("unauthorized",)))
case("delete_wrong_token", A, Http("DELETE", "/v1/videos/@VID@", "wrong"), Expect((403,), ("forbidden",)))
case("tus_create_without_token", A, Http("POST", "/v1/uploads", headers=(TUS, ("Upload-Length", "10"))),
     Expect((401,), ("unauthorized",)))
case("tus_patch_wrong_token", A, Http("PATCH", "/v1/uploads/@MISSING@", "wrong",
                                      headers=(TUS, ("Upload-Offset", "0"),
                                               ("Content-Type", "application/offset+octet-stream")), body=b"x"),
     Expect((403,), ("forbidden",)))
case("gossip_block_without_token", A, Http("POST", "/v1/debug/gossip-block", body=b'{"ids": ["n2"]}'),
     Expect((401,), ("unauthorized",)))
case("wake_without_credentials", A, Http("POST", "/v1/internal/wake"), Expect((401,), ("unauthorized",)))
case("wake_wrong_token", A, Http("POST", "/v1/internal/wake", "wrong"), Expect((401, 403), ("unauthorized", "forbidden")))

# ---- Range ---------------------------------------------------------------------------------------
R = "ranges"
_AGREE = "fast lane (HTTP/1.1) and hypercorn (HTTP/1.0) give the same status, one of {}; never a drop or 500"
for name, value, statuses in [
        ("range_5000_digit_start", "bytes=" + "9" * 5000 + "-", (200, 416)),
        ("range_5000_digit_end", "bytes=0-" + "9" * 5000, (200, 206, 416)),
        ("range_5000_digit_suffix", "bytes=-" + "9" * 5000, (200, 206, 416)),
        ("range_beyond_size", "bytes=999999999-", (416,)),
        ("range_suffix_zero", "bytes=-0", (416,)),
        ("range_inverted", "bytes=5-2", (200,)),
        ("range_500_ranges", "bytes=" + ",".join(f"{i}-{i}" for i in range(500)), (200,))]:
    short = value if len(value) < 40 else value[:20] + f"…({len(value)} chars)"
    case(name, R, Scenario("range_paths_agree", f"segment GET with `Range: {short}` on both paths",
                           (value, statuses)), _AGREE.format("/".join(map(str, statuses))))

# ---- HLS paths -----------------------------------------------------------------------------------
P = "paths"
for name, rest in [("hls_dotdot", "../../record.json"), ("hls_encoded_dotdot", "%2e%2e/%2e%2e/record.json"),
                   ("hls_encoded_slash_traversal", "..%2f..%2fsource"),
                   ("hls_rendition_then_up", "@REND@%2f..%2f..%2fsource"),
                   ("hls_nul", "master.m3u8%00"), ("hls_nul_before_suffix", "@SEG@%00.m3u8"),
                   ("hls_absolute_encoded", "%2fetc%2fpasswd"), ("hls_trailing_newline", "master.m3u8%0A"),
                   ("hls_double_encoded", "%252e%252e/record.json"),
                   ("hls_overlong_utf8_dots", "%c0%ae%c0%ae/%c0%ae%c0%ae/record.json")]:
    case(name, P, Raw(_get(f"/v1/videos/@VID@/hls/{rest}")), NOT_FOUND_OR_BAD)
case("hls_backslashes", P, Raw(_get("/v1/videos/@VID@/hls/@REND@\\..\\..\\source")),
     Expect((400, 404), drop_ok=True))

# ---- ids -----------------------------------------------------------------------------------------
I = "ids"
case("id_trailing_newline", I, Raw(_get("/v1/videos/@VID@%0A")), NOT_FOUND_OR_BAD)
case("id_trailing_newline_hls", I, Raw(_get("/v1/videos/@VID@%0A/hls/master.m3u8")), NOT_FOUND_OR_BAD)
case("id_trailing_newline_owner", I, Raw(_get("/v1/cluster/owner/@VID@%0A")), NOT_FOUND_OR_BAD)
case("id_trailing_newline_delete", I, Http("DELETE", "/v1/videos/@VID@%0A", "token"), NOT_FOUND_OR_BAD)
case("id_trailing_newline_tus_patch", I, Http("PATCH", "/v1/uploads/@VID@%0A", "token",
                                              headers=(TUS, ("Upload-Offset", "0"),
                                                       ("Content-Type", "application/offset+octet-stream")),
                                              body=b"x"), NOT_FOUND_OR_BAD)
case("id_fullwidth_unicode", I, Raw(_get("/v1/videos/" + "%EF%BD%81" * 26)), NOT_FOUND_OR_BAD)
case("id_uppercase", I, Raw(_get("/v1/videos/@VIDUP@")), NOT_FOUND_OR_BAD)

# ---- tus -----------------------------------------------------------------------------------------
T = "tus"
case("tus_without_version", T, Http("POST", "/v1/uploads", "token", headers=(("Upload-Length", "10"),)),
     Expect((412,), ("tus_version_required",)))
case("tus_bad_version", T, Http("POST", "/v1/uploads", "token", headers=(("Tus-Resumable", "0.2.2"), ("Upload-Length", "10"))),
     Expect((412,), ("tus_version_unsupported",)))
case("tus_negative_length", T, Http("POST", "/v1/uploads", "token", headers=(TUS, ("Upload-Length", "-1"))),
     Expect((400,)))
case("tus_huge_length", T, Http("POST", "/v1/uploads", "token", headers=(TUS, ("Upload-Length", "1" + "0" * 30))),
     Expect((400, 413), ("bad_upload_length", "too_large")))
case("tus_bad_metadata_base64", T, Http("POST", "/v1/uploads", "token",
                                        headers=(TUS, ("Upload-Length", "10"), ("Upload-Metadata", "filename !!!notbase64"))),
     Expect((400,), ("bad_upload_metadata",)))
case("tus_metadata_10k", T, Http("POST", "/v1/uploads", "token",
                                 headers=(TUS, ("Upload-Length", "10"), ("Upload-Metadata", "filename " + "QUFB" * 2500))),
     Expect((400,), ("bad_upload_metadata",)))
for name, length, offset, hdrs, body, exp in [
        ("tus_offset_mismatch", 10, "5", (), b"hello", Expect((409,))),
        ("tus_patch_wrong_content_type", 10, "0", (("Content-Type", "application/json"),), b"hello", Expect((415,))),
        ("tus_checksum_mismatch", 10, "0", (("Upload-Checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="),), b"hello",
         Expect((460,))),
        ("tus_checksum_unknown_algorithm", 10, "0", (("Upload-Checksum", "md5 XUFAKrxLKna5cZ2REBfFkg=="),), b"hello",
         Expect((400,))),
        ("tus_patch_past_length", 4, "0", (), b"0123456789", Expect((413,), ("beyond_upload_length",))),
        ("tus_offset_not_a_number", 10, "0x10", (), b"hello", Expect((400,)))]:
    case(name, T, Scenario("tus_patch", f"create a {length}-byte upload, PATCH {len(body)} bytes at offset {offset}"
                           + "".join(f", {k}: {v}" for k, v in hdrs), (length, offset, hdrs, body)), exp)

# ---- the owner hop -------------------------------------------------------------------------------
O = "owner-hop"
OBJ = "@VID@/out/@EPOCH@/master.m3u8"
case("hop_unsigned", O, Hop(OBJ, "none"), Expect((401,), ("unauthorized",)))
case("hop_unsigned_http10", O, Hop(OBJ, "none", http10=True), Expect((401,), ("unauthorized",)))
case("hop_wrong_signature", O, Hop(OBJ, "wrong"), Expect((403,), ("forbidden",)))
case("hop_signed_for_other_path", O, Hop(OBJ, "other_path"), Expect((403,), ("forbidden",)))
case("hop_stale_epoch", O, Hop("@VID@/out/@EPOCH_NEXT@/master.m3u8", "valid"), NOT_FOUND)
case("hop_epoch_zero", O, Hop("@VID@/out/0/master.m3u8", "valid"), NOT_FOUND)
case("hop_signed_traversal", O, Hop("@VID@/out/@EPOCH@/../../record.json", "valid"), NOT_FOUND_OR_BAD)
case("hop_signed_valid", O, Scenario("hop_valid", "a correctly signed hop for the ready epoch's master playlist"),
     "200 and the same bytes as the public playlist")

# ---- listing -------------------------------------------------------------------------------------
L = "listing"
for st in ("failed", "uploaded", "deleted"):
    case(f"list_anonymous_{st}", L, Scenario("list_cost", f"anonymous `GET /v1/videos?state={st}&limit=1000`", (st,)),
         "a 200 page or 401/403, answered within 2 s")
case("list_bad_cursor", L, Http("GET", "/v1/videos?cursor=../../etc/passwd"), Expect((400,), ("bad_cursor",)))
case("list_limit_huge", L, Http("GET", "/v1/videos?limit=" + "9" * 30), Expect((400,), ("bad_limit",)))
case("list_state_injection", L, Http("GET", "/v1/videos?state=ready%0A"), Expect((400,), ("bad_state",)))

# ---- embedded storage ----------------------------------------------------------------------------
E = "storage"
NO_ACCESS = "refused (no port, connection refused, or a 4xx/5xx without the data); the decoy is intact"
for name, port, method, path in [
        ("filer_list_bucket", "filer", "GET", "/buckets/@BUCKET@/"),
        ("filer_read_object", "filer", "GET", "/buckets/@BUCKET@/@DECOY@"),
        ("filer_write_object", "filer", "PUT", "/buckets/@BUCKET@/attack/written-by-filer"),
        ("filer_delete_object", "filer", "DELETE", "/buckets/@BUCKET@/@DECOY@"),
        ("master_assign_and_volume_write", "master", "ASSIGN", "/dir/assign"),
        ("master_topology", "master", "GET", "/dir/status"),
        ("volume_status", "volume", "GET", "/status"),
        ("s3_anonymous_list", "s3", "GET", "/@BUCKET@?list-type=2"),
        ("s3_anonymous_read", "s3", "GET", "/@BUCKET@/@DECOY@"),
        ("s3_anonymous_write", "s3", "PUT", "/@BUCKET@/attack/written-anonymously"),
        ("s3_anonymous_delete", "s3", "DELETE", "/@BUCKET@/@DECOY@"),
        ("s3_wrong_credentials", "s3", "SIGNED-WRONG", "/@BUCKET@?list-type=2")]:
    case(name, E, Scenario("storage_port", f"{method} {path} on the {port} port, no credentials", (port, method, path)),
         NO_ACCESS)

# ---- gossip UDP ----------------------------------------------------------------------------------
G = "gossip-udp"
case("udp_garbage", G, Scenario("udp_rejected", "20 datagrams of 500 random bytes", ("garbage", "forged")),
     "dropped as `forged`, no reply; members unchanged")
case("udp_truncated", G, Scenario("udp_rejected", "a 10-byte datagram", ("truncated", "truncated")),
     "dropped as `truncated`")
case("udp_oversized", G, Scenario("udp_rejected", "a 2,000-byte and a 65,000-byte datagram", ("oversized", "oversized")),
     "dropped as `oversized`")
case("udp_bit_flipped", G, Scenario("udp_rejected", "an authentic PING (wire version 2) with one bit flipped",
                                    ("bitflip", "forged")),
     "dropped as `forged`, no ACK")
case("udp_authentic_garbage_body", G, Scenario("udp_rejected", "a correct MAC over a body that is not a packet",
                                               ("undecodable", "undecodable")), "dropped as `undecodable`")
case("udp_stale_timestamp", G, Scenario("udp_rejected", "two authentic PINGs sent an hour ago and an hour ahead",
                                        ("stale", "stale")),
     "both dropped as `stale` (outside the ±`packet_window` s window), no ACK")
case("udp_replayed", G, Scenario("udp_replay", "an authentic PING, then the same bytes again"),
     "the first is ACKed; the replay is dropped as `replayed` and not ACKed")
case("udp_far_future_counter", G, Scenario("udp_far_future", "a key holder's PINGs as n2 with counter 2^32-1, under n2's "
                                                             "real boot id and a forged one, sent now and at the window's edge"),
     "a copy is refused once as `replayed`; n2 stays alive in every view for 4 s and n1 refuses none of "
     "n2's own packets (no `replayed` or `stale` drops)")

# ---- gossip TCP ----------------------------------------------------------------------------------
GT = "gossip-tcp"
case("tcp_64_idle_connections", GT, Scenario("tcp_idle", "64 idle TCP connections to n1's gossip port"),
     "at most `max_streams` (16) open after 0.5 s, the rest counted `stream_refused`; a key holder's "
     "fallback ping meanwhile is ACKed; none open 1 s after the header deadline (`stream_timeout`); "
     "n1's RSS grows < 50 MB; members unchanged")
case("tcp_oversized_frame", GT, Scenario("tcp_frame", "a key holder's valid frame header announcing 4 GiB, no body",
                                         ("huge",)),
     "closed within 1 s without waiting for the body, counted `stream_oversized`, no reply")
case("tcp_forged_oversized_frame", GT, Scenario("tcp_frame", "a frame header announcing 4 GiB, tagged with a wrong key",
                                                ("forged_huge",)),
     "closed within 1 s, counted `stream_forged`, no reply")
case("tcp_garbage_frame", GT, Scenario("tcp_frame", "100 random bytes", ("garbage",)),
     "closed within 1 s, counted `stream_garbage`, no reply")
case("tcp_partial_frame", GT, Scenario("tcp_frame", "the first 20 of a frame header's 39 bytes, then silence",
                                       ("partial",)),
     "closed by the header deadline (`header_timeout`, 1 s: before `stream_timeout`, 1.5 s in tests), "
     "counted `stream_timeout`")
case("tcp_replayed_frame", GT, Scenario("tcp_frame", "a key holder's PING frame (ACKed), then the same bytes on a "
                                                     "new connection", ("header_replayed",)),
     "the copy is closed within 1 s, counted `stream_replayed`, no reply")

# ---- slow clients --------------------------------------------------------------------------------
W = "slow-clients"
case("partial_heads_50", W, Scenario("partial_heads", "50 connections that send half a request head and wait"),
     "/healthz on the same node still answers within 2 s")
case("head_byte_by_byte", W, Raw(_get("/healthz"), pieces=38, pause=0.01, note="a /healthz request sent a byte at a time"),
     Expect((200,)))

# ---- delete ------------------------------------------------------------------------------------------
D = "delete"
case("delete_then_nothing_served", D, Scenario("delete_stops_serving",
                                                "DELETE a ready video (token) after every node served it"),
     "202; from 2 s later every node answers 404 for its playlist, segment and signed hop")


def markdown_table() -> str:
    lines = ["| case | category | request | expectation |", "|---|---|---|---|"]
    for c in CASES:
        req = c.request.describe().replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.category} | {req} | {c.describe_expect().replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
