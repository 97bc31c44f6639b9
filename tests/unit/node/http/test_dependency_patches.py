"""Every dependency internal node.http.patches lists still exists in the installed versions,
with the shape we rely on; an upgrade that moves one fails here, by name."""

from __future__ import annotations

import importlib
import inspect

import hypercorn.trio.run
import hypercorn.trio.tcp_server
import pytest
import trio

from node.http import patches
from node.http.body import BackpressureConnection, BoundedBody, BoundedRequest
from node.http.patches import RELIED_ON, Internal


def resolve(internal: Internal) -> object:
    obj = importlib.import_module(internal.module)  # the dependency's module, by its name
    for part in internal.path.split("."):
        assert hasattr(obj, part), f"{internal.module}.{internal.path}: {part!r} is gone ({internal.why})"
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
            f"{internal.module}.{internal.path} is neither a class attribute nor set by __init__"
        return
    obj = resolve(internal)
    if internal.kind == "class":
        assert inspect.isclass(obj)
    if internal.kind == "global":
        assert not inspect.ismodule(obj)
    if internal.kind == "function" or (internal.kind == "class" and internal.params):
        params = [p for p in inspect.signature(obj).parameters if p != "self"]
        assert params[:len(internal.params)] == list(internal.params), \
            f"{internal.module}.{internal.path}{inspect.signature(obj)}: we call it with {internal.params}"


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
    assert patches.BackpressureQuartTrio.asgi_http_class is BackpressureConnection
    assert patches.BackpressureQuartTrio.request_class is BoundedRequest
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
        # the lane in front of the guard (node.http.connection) in front of hypercorn's handler
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
