"""Every dependency internal node.http.patches lists still exists in the installed versions,
with the shape we rely on; an upgrade that moves one fails here, naming the internal, the
distribution and its installed version (e.g. ``quart-trio 0.12.0: quart_trio.asgi...``)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect

import hypercorn.trio.run
import hypercorn.trio.tcp_server
import pytest
import trio

from node.http import patches
from node.http.app import BackpressureConnection, BoundedBody, BoundedRequest, ShoalApp
from node.http.patches import RELIED_ON, Internal


def installed(module: str) -> str:
    """``"quart-trio 0.12.0"``: the distribution that installs ``module``, and its version."""
    top = module.split(".")[0]
    dist = importlib.metadata.packages_distributions().get(top, [top])[0]
    return f"{dist} {importlib.metadata.version(dist)}"


def where(internal: Internal) -> str:
    return f"{installed(internal.module)}: {internal.module}.{internal.path}"


def resolve(internal: Internal) -> object:
    obj = importlib.import_module(internal.module)  # the dependency's module, by its name
    for part in internal.path.split("."):
        assert hasattr(obj, part), f"{where(internal)}: {part!r} is gone ({internal.why})"
        obj = getattr(obj, part)
    return obj


def instance_attribute_set_by_init(internal: Internal) -> bool:
    """``Class.attr`` that ``Class.__init__`` assigns (``self.attr = ...``) rather than a class attribute."""
    cls_path, _, attr = internal.path.rpartition(".")
    cls = resolve(Internal(internal.module, cls_path, "class", internal.why))
    return f"self.{attr} =" in inspect.getsource(cls.__init__)


@pytest.mark.parametrize("internal", RELIED_ON, ids=lambda i: f"{i.module}.{i.path}")
def test_the_internal_we_rely_on_is_still_there(internal: Internal):
    if internal.kind == "attribute" and not hasattr(
            resolve(Internal(internal.module, internal.path.rpartition(".")[0], "class", "")),
            internal.path.rpartition(".")[2]):
        assert instance_attribute_set_by_init(internal), \
            f"{where(internal)} is neither a class attribute nor set by __init__ ({internal.why})"
        return
    obj = resolve(internal)
    if internal.kind == "class":
        assert inspect.isclass(obj), f"{where(internal)} is no longer a class ({internal.why})"
    if internal.kind == "global":
        assert not inspect.ismodule(obj), f"{where(internal)} is a module now ({internal.why})"
    if internal.kind == "function" or (internal.kind == "class" and internal.params):
        params = [p for p in inspect.signature(obj).parameters if p != "self"]
        assert params[:len(internal.params)] == list(internal.params), \
            f"{where(internal)}{inspect.signature(obj)}: we call it with {internal.params} ({internal.why})"


def test_a_missing_internal_is_reported_with_the_distribution_and_its_version():
    gone = Internal("hypercorn.trio.tcp_server", "NO_SUCH_THING", "global", "a test")
    with pytest.raises(AssertionError) as e:
        resolve(gone)
    version = importlib.metadata.version("hypercorn")
    assert str(e.value).startswith(
        f"Hypercorn {version}: hypercorn.trio.tcp_server.NO_SUCH_THING: 'NO_SUCH_THING' is gone (a test)")
    assert installed("quart_trio").startswith("quart-trio ") and installed("hashring").startswith("hashring ")


def test_the_hypercorn_globals_have_the_values_we_replace():
    # MAX_RECV is an int we raise; TCPServer in run is the class from tcp_server that we wrap
    assert isinstance(hypercorn.trio.tcp_server.MAX_RECV, int)
    assert hypercorn.trio.tcp_server.MAX_RECV < patches.RECV_SIZE
    assert hypercorn.trio.run.TCPServer is hypercorn.trio.tcp_server.TCPServer
    # worker_serve reads the name TCPServer from its module when serving starts
    assert "TCPServer" in inspect.getsource(hypercorn.trio.run.worker_serve)


def test_the_trio_body_initialiser_still_makes_what_bounded_body_uses():
    body = BoundedBody(10, None)
    for name in ("_complete", "_has_data"):
        event = getattr(body, name)
        assert hasattr(event, "wait") and hasattr(event, "set") and hasattr(event, "clear")
    assert body._must_raise is None and body._max_content_length is None


def test_our_classes_are_installed_on_the_app_class():
    assert ShoalApp.asgi_http_class is BackpressureConnection
    assert ShoalApp.request_class is BoundedRequest
    assert BoundedRequest.body_class is BoundedBody


class _Lane:
    def wrap(self, server):
        async def front(*args):
            await server(*args)
        front.wrapped = server
        return front


def test_serving_applies_both_hypercorn_patches_and_restores_them():
    recv, server = hypercorn.trio.tcp_server.MAX_RECV, hypercorn.trio.run.TCPServer
    with patches.serving(_Lane()):
        assert hypercorn.trio.tcp_server.MAX_RECV == patches.RECV_SIZE
        # the lane in front of the guard (node.http.edge) in front of hypercorn's handler
        assert hypercorn.trio.run.TCPServer.wrapped.wrapped is hypercorn.trio.tcp_server.TCPServer
    assert (hypercorn.trio.tcp_server.MAX_RECV, hypercorn.trio.run.TCPServer) == (recv, server)
    with pytest.raises(RuntimeError), patches.serving(None):
        assert hypercorn.trio.run.TCPServer.wrapped is server  # no lane: hypercorn's own, guarded
        raise RuntimeError("the node stops")
    assert (hypercorn.trio.tcp_server.MAX_RECV, hypercorn.trio.run.TCPServer) == (recv, server)


def test_the_placed_hash_ring_still_answers_as_hashring_does():
    # ring.ring._PlacedHashRing sets hashring's attributes instead of calling its __init__:
    # with equal weights its lookups must match a HashRing built by hashring itself.
    from hashring import HashRing

    from ring import Ring
    ids = ["n1", "n2", "n3", "n4"]
    ours, theirs = Ring({i: 1 for i in ids}), HashRing(ids)
    keys = [f"video-{k}" for k in range(300)]
    assert [ours.owner(k) for k in keys] == [theirs.get_node(k) for k in keys]
    assert [ours.preference(k) for k in keys[:50]] == [list(theirs.iterate_nodes(k))[:len(ours.preference(k))]
                                                      for k in keys[:50]]


async def test_the_trio_event_wrapper_is_re_armable():
    from quart_trio.wrappers.request import EventWrapper
    e = EventWrapper()
    e.set()
    await e.wait()
    e.clear()
    assert not e.is_set()
    with trio.move_on_after(0.01) as scope:
        await e.wait()
    assert scope.cancelled_caught


def test_the_aiobotocore_client_still_hands_its_credentials_to_storage_raw():
    # storage.open_store uses the raw S3 path only where this chain exists; without this test an
    # upgrade would turn the raw uploads off without a word (no network: a client is only built).
    import aioboto3

    async def frozen() -> object:
        session = aioboto3.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret",
                                   region_name="us-east-1")
        async with session.client("s3", endpoint_url="http://127.0.0.1:9") as client:
            signer = getattr(client, "_request_signer", None)
            assert signer is not None, f"{installed('aiobotocore')}: client._request_signer is gone"
            creds = getattr(signer, "_credentials", None)
            assert creds is not None, f"{installed('aiobotocore')}: _request_signer._credentials is gone"
            assert inspect.iscoroutinefunction(creds.get_frozen_credentials), \
                f"{installed('aiobotocore')}: get_frozen_credentials is no longer a coroutine"
            return await creds.get_frozen_credentials()

    got = asyncio.run(frozen())
    assert (got.access_key, got.secret_key) == ("AKIDTEST", "secret")


def test_botocore_signs_unsigned_payload_when_the_context_says_so():
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from storage.s3 import _UNSIGNED_BODY
    req = AWSRequest(method="PUT", url="http://127.0.0.1:9/b/k?partNumber=1&uploadId=u",
                     headers={"Content-Length": "5"})
    req.context["client_config"] = _UNSIGNED_BODY
    S3SigV4Auth(Credentials("AKIDTEST", "secret"), "s3", "us-east-1").add_auth(req)
    assert req.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD", \
        f"{installed('botocore')}: S3SigV4Auth no longer reads payload_signing_enabled from the context"
    assert req.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
