"""node/log.py: one JSON object per line at one level, for our events and for the standard-library
loggers of the dependencies (routed through the root logger with a ``logger`` field)."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from node import log

DEPENDENCIES = ("hypercorn.error", "quart.app", "botocore.endpoint", "aiobotocore.client",
                "trio_asyncio", "httpx", "asyncio")


@pytest.fixture
def out():
    """Given node.log writing into a buffer; the process-wide logging state is restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, log._node_id, log._stream, log._threshold)
    saved_deps = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate,
                      logging.getLogger(n).level) for n in log.DEPENDENCY_LOGGERS}
    buf = io.StringIO()
    yield buf
    logging.captureWarnings(False)
    root.handlers, root.level = saved[0], saved[1]
    log._node_id, log._stream, log._threshold = saved[2:]
    for n, (handlers, propagate, level) in saved_deps.items():
        dep = logging.getLogger(n)
        dep.handlers, dep.propagate, dep.level = handlers, propagate, level


def lines(buf: io.StringIO) -> list[dict]:
    text = buf.getvalue()
    assert text == "" or text.endswith("\n")
    rows = text.splitlines()
    parsed = [json.loads(row) for row in rows]  # raises on any line that is not one JSON object
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


def test_the_level_drops_lower_lines_ours_and_the_libraries(out):
    log.configure("n1", out, level="warning")
    log.info("quiet")
    log.debug("quieter")
    log.warning("loud", video="v1")
    logging.getLogger("botocore.endpoint").info("sending request")
    logging.getLogger("hypercorn.error").error("Error in ASGI Framework")
    got = lines(out)
    assert [(r["event"], r["level"], r.get("logger")) for r in got] == [
        ("loud", "warning", None), ("library_log", "error", "hypercorn.error")]
    assert got[1]["message"] == "Error in ASGI Framework" and got[1]["node"] == "n1"


@pytest.mark.parametrize("name", DEPENDENCIES)
def test_every_dependency_logger_arrives_as_a_json_line(out, name):
    stray = logging.StreamHandler(io.StringIO())  # a handler the library installed itself
    logging.getLogger(name.split(".")[0]).addHandler(stray)
    log.configure("n1", out, level="debug")
    logging.getLogger(name).debug("detail %s", "x")
    (row,) = lines(out)
    assert (row["event"], row["logger"], row["level"], row["message"]) == (
        "library_log", name, "debug", "detail x")
    assert stray.stream.getvalue() == ""  # nothing went past our handler


def test_newlines_exceptions_and_bad_records_stay_one_line(out):
    log.configure("n1", out, level="info")
    try:
        raise RuntimeError("two\nlines")
    except RuntimeError:
        logging.getLogger("quart.app").exception("Exception on request\nPOST /v1/videos")
    logging.getLogger("httpx").info("%d items", "not a number")  # a library's bad format
    log.info("event_with_text", detail="a\nb\r\nc")
    got = lines(out)
    assert len(got) == 3 and len(out.getvalue().splitlines()) == 3
    assert "RuntimeError: two\nlines" in got[0]["exc"] and got[0]["level"] == "error"
    assert got[1]["message"].startswith("unformattable record")
    assert got[2]["detail"] == "a\nb\r\nc"


def test_python_warnings_become_json_lines_too(out):
    import warnings
    log.configure("n1", out, level="info")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old API\nused", DeprecationWarning)
    (row,) = lines(out)
    assert row["logger"] == "py.warnings" and "old API\nused" in row["message"]


def test_lines_from_threads_never_interleave(out):
    log.configure("n1", out, level="info")

    def chatter(i: int) -> None:
        for j in range(200):
            logging.getLogger("botocore").info("thread %d line %d %s", i, j, "x" * 500)

    threads = [threading.Thread(target=chatter, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lines(out)) == 800


@pytest.mark.parametrize("configured, env, expected", [
    ("info", {}, "info"),
    ("debug", {"SHOAL_LOG_LEVEL": ""}, "debug"),  # empty means unset
    ("info", {"SHOAL_LOG_LEVEL": "WARNING"}, "warning"),
    ("error", {"SHOAL_LOG_LEVEL": "debug"}, "debug"),
])
def test_the_environment_overrides_the_configured_level(configured, env, expected):
    assert log.level_from(configured, env) == expected


def test_an_unknown_level_in_the_environment_is_refused_by_name():
    with pytest.raises(ValueError, match=r"\$SHOAL_LOG_LEVEL: 'loud' is not a log level"):
        log.level_from("info", {"SHOAL_LOG_LEVEL": "loud"})
