"""Regenerate docs/reference.md from node/config.py and membership/config.py:
`.venv/bin/python scripts/gen_reference.py` (`--check`: exit 1 when the page differs from the
code; tests/unit/node/test_config_reference.py runs that check)."""

import inspect
import re
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from membership import MembershipConfig  # noqa: E402
from node import config as c  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "reference.md"

HEAD = """# Reference: configuration

`cluster.yml` maps one-to-one onto `node/config.py` (`Config`, msgspec Structs); its `membership:`
section onto `membership/config.py` (`MembershipConfig`, the gossip package's own). Sizes accept
`"8 MiB"`-style strings; times are seconds. A key with no value (`storage:` with nothing under it)
keeps its default. `profile: local` starts from `Config.local()` (fast timers for tests and demos
on one machine); the file's own keys then override it. This page is generated from the code by
`scripts/gen_reference.py`; a test fails when they differ.

Decoding is strict: a wrong type (`http_port: "8001"`, `fast_lane: "no"`; YAML's bare `no` is
false), a value out of range or an unknown key anywhere is an error that names its path, and
every error is reported, not only the first:

```
top level: unknown key 'storag' (known: nodes, cluster, ...; did you mean 'storage'?)
nodes[0].http_port: expected a whole number, got "8001"
membership.probe_interval: expected a number, got "fast"
cache.fast_lane: expected true or false, got "no"
```

`shoal config check [--config FILE]` prints the effective configuration (defaults filled in,
sizes as `"8 MiB"`, a password in `storage.endpoint` masked) as YAML and exits 0, or prints every
error and exits 2. A node refuses to start (exit 2) with the same messages.

## Top level

| key | default | meaning |
|---|---|---|
| `cluster` | `shoal` | cluster name (public: no key is derived from it) |
| `state_dir` | `.shoal` | launcher state (pids, logs, secrets, embedded S3 data), relative to cluster.yml |
| `profile` | `default` | `default` or `local` |
| `log_level` | `info` | LOG_LEVELS: lines below it are not written (the node's own and its libraries', `node/log.py`); `$SHOAL_LOG_LEVEL` overrides it |
| `nodes` | (required) | list of `{id, host, http_port, gossip_port, weight: 1}`; `id` is 1-64 of `[A-Za-z0-9_.-]`, ports 1-65535, `weight` (1-100) scales a node's share of the ring |
| `seeds` | every node | node ids a starting node joins through |
| `ladder` | LADDER_DEFAULT | renditions `{name, height, video_kbps, audio_kbps}` (name 1-32 of `[A-Za-z0-9_.-]`, unique; height >= 2; video_kbps > 0; audio_kbps >= 0, default 128); renditions taller than the source are skipped (never upscaled). Every source at least 64 lines tall gets two or more: when fewer than two rungs fit, a rendition at the source's own height is added above them, else one at half the top height below (at least 32 lines), bitrate scaled from the nearest rung by the pixel ratio (`node/process/ladder.py`); a source under 64 lines gets one rendition at its own height |
| `auth` | the mapping below | `auth: none` (this string) runs the nodes without token and cluster key, on purpose: writes open to anyone who reaches a node, gossip checked but not authenticated; each node logs one `auth_none` warning at start. Otherwise a node without `$SHOAL_TOKEN` or `$SHOAL_CLUSTER_KEY` exits 2 with the reason. The mapping form (`auth: {token_env, cluster_key_env}`) only renames the variables |
| `access_log` | `true` | one JSON line per HTTP request on stderr (event `http_request`: method, route class, status, body bytes in and out, ms; `node/http/edge.py`, docs/operations.md); `false` leaves the lines out, the metrics stay |

## Sections

| section | key | default | `profile: local` | allowed | meaning |
|---|---|---|---|---|---|
"""

TAIL = """
## Derived values

| value | formula | code |
|---|---|---|
| lease renewal period | `lease_seconds / 3` | `node/process/worker.py` |
| retry delay after attempt *a* | uniform in `[0.5, 1] * min(backoff_max, backoff_base * 2^(a-1))` | `node/lifecycle.backoff` |
| min suspicion timeout | `suspicion_mult * max(1, log10 N) * probe_interval` | `membership/suspicion.py` |
| max suspicion timeout | `suspicion_max_mult * min` | `membership/suspicion.py` |
| piggyback retransmits | `retransmit_mult * ceil(log10(N + 1))` | `membership/dissemination.py` |
| largest gossip TCP frame | `284 + 2 + 664 * max_members + 32` bytes (~664 KiB for 1,024 members) | `membership/codec.push_pull_limit` |
| inbound gossip TCP bodies buffered at most | `max_streams * largest frame` (~10.4 MiB by default) | `membership/streams.py` |
| webhook retry delay after round *a* | uniform in `[0.5, 1] * min(webhooks.backoff_max, webhooks.backoff_base * 2^(a-1))`; dead after `max_attempts` rounds | `node/webhooks/policy.retry_delay` |
| part size for an object of size S | `part_size`, or the smallest multiple of 5 MiB that keeps S within 10,000 parts | `storage/multipart.part_size_for` |
| chunks of a video of D seconds (`processing.chunked`) | one when `ceil(D / segment_seconds) <= 1.5 * chunk_segments`; else `chunk_segments * segment_seconds` each, the last one the rest (a rest under half a chunk joins the chunk before) | `node/chunks/plan.cut` |
| an idle node takes a unit of another node's | after it waited `pending` for one `lease_seconds` | `node/cluster.py` `CHUNK_STEAL_AFTER_LEASES` |

## Environment

| variable | used by | meaning |
|---|---|---|
| `SHOAL_TOKEN` (name set by `auth.token_env`) | nodes, CLI | bearer token for write endpoints and non-default listings; the launcher generates one into `<state_dir>/secrets.json`; required unless `auth: none` |
| `SHOAL_CLUSTER_KEY` (`auth.cluster_key_env`) | nodes | HMAC key for gossip packets; generated by the launcher; required unless `auth: none` |
| `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | nodes, embedded S3 | storage credentials; generated for embedded storage |
| `SHOAL_WEBHOOK_SECRET` (`webhooks.secret_env`) | nodes | HMAC-SHA256 key of `X-Shoal-Signature` ([webhooks.md](webhooks.md)); required when `webhooks.urls` is set (a node exits 2 without it, even under `auth: none`) |
| `SHOAL_CONFIG` | CLI, nodes | path of cluster.yml (default `./cluster.yml`) |
| `SHOAL_LOG_LEVEL` | nodes | `debug`, `info`, `warning` or `error`: overrides `log_level` (a node exits 2 on any other value) |
| `SHOAL_GOSSIP_DROP` | nodes | fault injection: comma-separated node ids whose gossip is dropped |
| `SHOAL_MALLOC` | nodes | `arena` (default), `full` or `off`: glibc malloc tuning, see `node/main.py` `tune_malloc` |
"""

SECTIONS = [(c.StorageConfig, "storage"), (MembershipConfig, "membership"),
            (c.Timing, "timing"), (c.Processing, "processing"),
            (c.Limits, "limits"), (c.CacheConfig, "cache"), (c.MediaLimits, "media"),
            (c.AuthConfig, "auth"), (c.CorsConfig, "cors"), (c.WebhooksConfig, "webhooks")]

_WORDS = {int: "integer", float: "number", str: "string", bool: "true/false"}


def comment(cls: type, name: str) -> str:
    for line in inspect.getsourcelines(cls)[0]:
        m = re.match(rf"\s+{name}:.*?#\s*(.*)$", line)
        if m:
            return m.group(1)
    return ""


def human(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v >= c.MiB and v % c.MiB == 0:
        return str(c.human_size(v))
    if isinstance(v, tuple) and all(isinstance(x, str) for x in v):  # as cluster.yml writes it
        return "[" + ", ".join(f'"{x}"' for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return str(v)


def allowed(typ: object) -> str:
    """What the decoder accepts for a field, from its type and constraints."""
    import typing
    bounds = []
    while typing.get_origin(typ) is typing.Annotated:
        typ, *metas = typing.get_args(typ)
        for m in metas:
            if isinstance(m, msgspec.Meta):
                bounds += [f"{op} {getattr(m, k)}" for k, op in
                           (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                            ("min_length", "length >="), ("max_length", "length <="))
                           if getattr(m, k) is not None]
                if m.pattern:
                    bounds.append(f"matching `{m.pattern}`")
    if typ is c.Size:
        words = "size"
    elif typing.get_origin(typ) is typing.Literal:
        words = " / ".join(f"`{a}`" for a in typing.get_args(typ))
    elif typing.get_origin(typ) in (typing.Union, __import__("types").UnionType):
        words = " or ".join(allowed(a) for a in typing.get_args(typ))
    elif typing.get_origin(typ) is tuple:
        words = f"list of {allowed(typing.get_args(typ)[0])}"
    elif typ is type(None):
        words = "null"
    else:
        words = _WORDS.get(typ, getattr(typ, "__name__", str(typ)))
    return " ".join([words, *bounds])


def render() -> str:
    local = c.Config(nodes=(c.NodeSpec("a", "127.0.0.1", 1, 2),)).local()
    rows = []
    for cls, sec in SECTIONS:
        for f in msgspec.structs.fields(cls):
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
            lv = getattr(getattr(local, sec), f.name)
            loc = f"`{human(lv)}`" if lv != default else ""
            rows.append(f"| {sec} | `{f.name}` | `{human(default)}` | {loc} | {allowed(f.type)} "
                        f"| {comment(cls, f.name)} |")
    ladder = ", ".join(f"{r.name} ({r.video_kbps}+{r.audio_kbps} kbit/s)" for r in c.DEFAULT_LADDER)
    levels = ", ".join(f"`{v}`" for v in c.LOG_LEVELS)
    head = HEAD.replace("LADDER_DEFAULT", ladder).replace("LOG_LEVELS", levels)
    return head + "\n".join(rows) + "\n" + TAIL


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text() != text:
            print(f"{OUT} differs from the code: run scripts/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
