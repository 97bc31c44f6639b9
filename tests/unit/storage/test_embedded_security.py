"""The embedded S3 server is reachable only through S3 with its keys (docs/security.md).

Real SeaweedFS (the session's ``s3_server``): objects are written through S3, then every other
port of ``weed mini`` is tried.  From this machine they do not exist (weed runs in a network
namespace of its own, behind ``storage.s3_gateway``); and even from inside that namespace they
give no object access without credentials (JWT on volume and filer, mutual TLS on gRPC).
"""

from __future__ import annotations

import ctypes
import os
import socket
import ssl
import stat
import threading
import uuid

import boto3
import botocore.config
import botocore.exceptions
import httpx
import psutil
import pytest

from conftest import ACCESS_KEY, SECRET_KEY

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
CLONE_NEWNET = 0x40000000


def weed_pid(server) -> int:
    """The ``weed mini`` process: the one child of the gateway."""
    (child,) = psutil.Process(server.proc.pid).children()
    assert "mini" in child.cmdline()
    return child.pid


def inside_weed_namespace(server, fn):
    """Run ``fn()`` on a thread that entered weed's network namespace (sockets it opens live there)."""
    out: dict = {}

    def run() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(f"/proc/{weed_pid(server)}/ns/net", os.O_RDONLY)
        try:
            assert libc.setns(fd, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test's thread
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state in the network namespace of ``pid`` (/proc/<pid>/net/tcp)."""
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                ports.add(int(local.split(":")[1], 16))
    return ports


def side_ports(server) -> dict[str, int]:
    """``{"master.port": ..., "filer.port.grpc": ...}`` from the server's command line."""
    ports = {}
    for arg in server.proc.args:
        name, _, value = arg.lstrip("-").partition("=")
        if name.endswith((".port", ".grpc")) and value.isdigit():
            ports[name] = int(value)
    return ports


def s3_client(server, access_key: str | None, secret_key: str | None):
    cfg = botocore.config.Config(retries={"max_attempts": 1},
                                 signature_version=botocore.UNSIGNED if access_key is None else "s3v4")
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=access_key or "x", aws_secret_access_key=secret_key or "x",
                        config=cfg)


@pytest.fixture
def stored(s3_server):
    """A fresh bucket with one small and one multi-chunk object, written through S3."""
    bucket = "sec" + uuid.uuid4().hex[:10]
    s3 = s3_client(s3_server, ACCESS_KEY, SECRET_KEY)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="videos/a/record.json", Body=b'{"state": "ready"}')
    s3.put_object(Bucket=bucket, Key="videos/a/source", Body=b"v" * (5 << 20))
    return s3, bucket


def test_s3_with_keys_works_and_without_or_wrong_keys_is_refused(s3_server, stored):
    s3, bucket = stored
    assert s3.get_object(Bucket=bucket, Key="videos/a/record.json")["Body"].read() == b'{"state": "ready"}'
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [
        "videos/a/record.json", "videos/a/source"]
    for who in (s3_client(s3_server, None, None), s3_client(s3_server, ACCESS_KEY, "wrong-secret"),
                s3_client(s3_server, "nobody", SECRET_KEY)):
        for call in (lambda c: c.get_object(Bucket=bucket, Key="videos/a/record.json"),
                     lambda c: c.list_objects_v2(Bucket=bucket),
                     lambda c: c.put_object(Bucket=bucket, Key="evil", Body=b"x"),
                     lambda c: c.delete_object(Bucket=bucket, Key="videos/a/record.json")):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                call(who)
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.get_object(Bucket=bucket, Key="videos/a/record.json")["Body"].read() == b'{"state": "ready"}'
    assert "evil" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]


def test_no_side_port_is_reachable_from_this_machine(s3_server, stored):
    s3, bucket = stored
    ports = side_ports(s3_server)
    assert {"master.port", "volume.port", "filer.port", "master.port.grpc", "volume.port.grpc",
            "filer.port.grpc", "s3.port.grpc"} <= set(ports)
    # They exist, in weed's own network namespace ...
    assert set(ports.values()) - {ports["admin.port.grpc"]} <= listening_ports(weed_pid(s3_server))
    assert s3_server.port in listening_ports(weed_pid(s3_server))
    # ... and from here nothing answers on them, not even the master's unauthenticated admin calls
    # (only the S3 port does: there the gateway forwards to weed's S3 socket).
    for name, port in ports.items():
        if name == "s3.port":
            continue
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with httpx.Client(timeout=10) as http:
        with pytest.raises(httpx.ConnectError):
            http.post(f"http://127.0.0.1:{ports['master.port']}/col/delete", params={"collection": bucket})
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 2


def test_filer_http_refuses_list_read_write_delete(s3_server, stored):
    s3, bucket = stored
    filer = f"http://127.0.0.1:{side_ports(s3_server)['filer.port']}"

    def probe():
        with httpx.Client(timeout=10) as http:
            return {
                "list bucket": http.get(f"{filer}/buckets/{bucket}/videos/a/", headers={"Accept": "application/json"}),
                "list all": http.get(f"{filer}/buckets/", headers={"Accept": "application/json"}),
                "read": http.get(f"{filer}/buckets/{bucket}/videos/a/record.json"),
                "write": http.put(f"{filer}/buckets/{bucket}/videos/a/record.json", content=b"forged"),
                "post": http.post(f"{filer}/buckets/{bucket}/evil", files={"file": ("evil", b"x")}),
                "delete": http.delete(f"{filer}/buckets/{bucket}/videos/a/record.json"),
                "delete folder": http.delete(f"{filer}/buckets/{bucket}/videos/", params={"recursive": "true"}),
            }

    answers = inside_weed_namespace(s3_server, probe)
    assert {k: r.status_code for k, r in answers.items()} == {k: 401 for k in answers}
    assert all(b"ready" not in r.content for r in answers.values())
    assert s3.get_object(Bucket=bucket, Key="videos/a/record.json")["Body"].read() == b'{"state": "ready"}'
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 2


def test_volume_and_master_http_give_no_object_access(s3_server, stored):
    s3, bucket = stored
    ports = side_ports(s3_server)
    master, volume = f"http://127.0.0.1:{ports['master.port']}", f"http://127.0.0.1:{ports['volume.port']}"

    def probe():
        with httpx.Client(timeout=10) as http:
            # The master hands out a file id and where volumes are, but never a token to use them.
            assign = http.get(f"{master}/dir/assign").json()
            assert "fid" in assign and "auth" not in assign
            lookup = http.get(f"{master}/dir/lookup", params={"fileId": assign["fid"]}).json()
            assert "auth" not in lookup and "jwt" not in str(lookup).lower()
            fid = assign["fid"]
            vid = fid.split(",")[0]
            return {
                "write": http.post(f"{volume}/{fid}", files={"file": ("x", b"forged")}),
                "read": http.get(f"{volume}/{fid}"),
                "read other": http.get(f"{volume}/{vid},01637037d6"),
                "delete": http.delete(f"{volume}/{fid}"),
                "ui": http.get(f"{volume}/ui/index.html"),
            }

    answers = inside_weed_namespace(s3_server, probe)
    assert {k: r.status_code for k, r in answers.items()} == {k: 401 for k in answers}
    assert s3.get_object(Bucket=bucket, Key="videos/a/source")["Body"].read() == b"v" * (5 << 20)


@pytest.mark.parametrize("name", ["master.port.grpc", "volume.port.grpc", "filer.port.grpc",
                                  "s3.port.grpc"])
def test_grpc_ports_need_the_client_certificate(s3_server, name):
    inside_weed_namespace(s3_server, lambda: grpc_refuses(side_ports(s3_server)[name]))


def grpc_refuses(port: int) -> None:
    # Plain (the way weed's gRPC clients talk without TLS): closed without an HTTP/2 answer.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(H2_PREFACE)
        try:
            answer = s.recv(64)
        except ConnectionResetError:
            answer = b""
    assert answer == b""
    # TLS without a client certificate: the handshake is refused.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with pytest.raises((ssl.SSLError, ConnectionResetError)) as e:
            with ctx.wrap_socket(s) as t:
                t.sendall(H2_PREFACE)
                t.recv(64)
    assert "certificate required" in str(e.value) or isinstance(e.value, ConnectionResetError)


def test_data_files_are_private(s3_server, stored):
    root = s3_server.data_dir
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "security.toml").stat().st_mode) == 0o600
    checked = []
    for path in [root, *root.rglob("*")]:
        if path.suffix == ".vif":
            # Volume info (format version, sizes; no object bytes): weed 4.48 writes it 0644
            # whatever the umask.  Only the owner can reach it: its folder is 0700.
            assert path.parent == root
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(root)} has mode {mode:o}"
        checked.append(path.suffix)
    assert {".dat", ".idx", ".toml", ".key"} <= set(checked)  # object bytes, index, keys


def test_security_config_is_fresh_private_and_needs_openssl(tmp_path, monkeypatch):
    from storage import embedded
    first = embedded.write_security_config(tmp_path).read_text()
    second_path = embedded.write_security_config(tmp_path)
    second = second_path.read_text()
    assert stat.S_IMODE(second_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls" / "grpc.key").stat().st_mode) == 0o600
    keys = [ln for ln in second.splitlines() if ln.startswith("key = ") and "grpc" not in ln]
    assert len(keys) == 4 and len(set(keys)) == 4  # four distinct JWT keys ...
    assert not set(keys) & set(first.splitlines())  # ... new at every start
    for section in ("[jwt.signing]", "[jwt.signing.read]", "[jwt.filer_signing]",
                    "[jwt.filer_signing.read]", "[grpc.master]", "[grpc.volume]", "[grpc.filer]",
                    "[grpc.s3]", "[grpc.client]"):
        assert section in second
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="openssl"):
        embedded.write_security_config(tmp_path)


def test_a_data_folder_too_deep_for_the_s3_socket_is_refused_before_anything_starts(tmp_path):
    from storage import embedded
    deep = tmp_path / ("d" * 120)
    with pytest.raises(RuntimeError, match="shorter state_dir"):
        embedded.start_embedded(deep, 1, tmp_path / "log", access_key="a", secret_key="b")
    assert not deep.exists()
