"""The embedded S3 server comes back, with its data, after every way it can be stopped.

Real SeaweedFS through :class:`cli.Launcher` (the code ``shoal up`` and the chaos nemesis use):
storage is stopped, started again, and must answer S3 with every object written before, three
times in a row for each way of stopping it:

- ``SIGKILL`` / ``SIGTERM`` to its process group (``shoal down``, the nemesis's storage fault);
- ``SIGKILL`` to the gateway alone (``kill -9 <pid>``, the OOM killer);
- and started again from a thread that then ends (as a chaos nemesis track does).

Killed alone, the gateway dies without weed being signalled; weed must die with it
(storage/s3_gateway.py, "weed never outlives its gateway"), or the orphan keeps the data folder
and the next start's weed crashes: storage never comes back.  Started from a thread that ends,
storage must keep running: tests' parent-death signal follows the test runner
(cli/launcher.py, ``_spawner``), not the thread that asked for the start.
"""

from __future__ import annotations

import signal
import threading
import time

import boto3
import botocore.config
import botocore.exceptions
import psutil
import pytest

from harness import Cluster

ROUNDS = 3
BUCKET = "restart-test"


def weeds_of(data_dir) -> list[psutil.Process]:
    """Live ``weed mini`` processes serving ``data_dir`` (zombies do not count)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if (cmd[:1] and cmd[0].endswith("weed") and f"-dir={data_dir}" in cmd
                and p.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(p)
    return found


def wait_no_weed(data_dir, timeout: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := weeds_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def s3_client(c: Cluster):
    return boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.access_key,
                        aws_secret_access_key=c.secret_key, region_name="us-east-1",
                        config=botocore.config.Config(retries={"max_attempts": 1},
                                                      connect_timeout=3, read_timeout=15))


def stop_group(sig: int):
    def stop(c: Cluster) -> None:
        c.stop_storage(sig)
    return stop


def kill_gateway_alone(c: Cluster) -> None:
    pid = c.launcher.pid("storage")
    psutil.Process(pid).send_signal(signal.SIGKILL)
    psutil.Process(pid).wait(10)


def in_a_thread_that_ends(c: Cluster) -> None:
    """Start storage from a thread that then ends, as a chaos nemesis track does."""
    th = threading.Thread(target=c.start_storage)
    th.start()
    th.join()
    time.sleep(1.0)  # a parent-death signal tied to that thread would have struck by now


def in_this_thread(c: Cluster) -> None:
    c.start_storage()


CASES = {"group-SIGKILL": (stop_group(signal.SIGKILL), in_this_thread),
         "group-SIGTERM": (stop_group(signal.SIGTERM), in_this_thread),
         "gateway-alone-SIGKILL": (kill_gateway_alone, in_this_thread),
         "SIGKILL-then-start-from-an-ending-thread": (stop_group(signal.SIGKILL), in_a_thread_that_ends)}


@pytest.mark.parametrize("how", list(CASES))
def test_storage_answers_with_the_same_data_after_each_restart(tmp_path, how):
    c = Cluster(tmp_path / "c", nodes=1, start=False)
    try:
        c.start_storage()
        s3 = s3_client(c)
        s3.create_bucket(Bucket=BUCKET)
        written = {}
        for i in range(ROUNDS):
            key, body = f"round-{i}", f"written before stop {i} ({how})".encode() * 100
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            written[key] = body
            stop, start = CASES[how]
            stop(c)
            assert not wait_no_weed(c.launcher.s3_dir), f"round {i}: weed outlived its gateway"
            with pytest.raises(botocore.exceptions.EndpointConnectionError):
                s3.head_bucket(Bucket=BUCKET)  # really down: nothing answers on the S3 port
            start(c)
            for k, b in written.items():
                assert s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == b, f"round {i}: {k}"
            listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
            assert listed == set(written), f"round {i}"
            assert len(weeds_of(c.launcher.s3_dir)) == 1, f"round {i}: one weed serves the data"
    finally:
        c.close()
        leftover = wait_no_weed(c.launcher.s3_dir)
        for p in leftover:  # stop what this test started, even on failure
            p.kill()
    assert not leftover, "close() left a weed running"
