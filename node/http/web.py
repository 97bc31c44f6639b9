"""The web page at ``/``, served by every node: upload, videos, playback, cluster view.

    GET /                          node/static/index.html
    GET /static/<file>             node/static/* (the page's own script and style)
    GET /static/vendor/hls.js      hls.js, from web/node_modules (npm, installed by the set-up)
    GET /static/vendor/tus.js      tus-js-client, from web/node_modules

Nothing is fetched from the internet at run time: the browser libraries come from
``web/node_modules`` (``npm ci --prefix web``).  When they are missing the
vendor routes answer 503 saying what to run, and the page shows that instead
of failing silently.
"""

from __future__ import annotations

from pathlib import Path

from quart import Response

from node.context import NodeContext
from node.http.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
NODE_MODULES = Path(__file__).resolve().parents[2] / "web" / "node_modules"
VENDOR = {
    "hls.js": NODE_MODULES / "hls.js" / "dist" / "hls.min.js",
    "tus.js": NODE_MODULES / "tus-js-client" / "dist" / "tus.min.js",
}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
INSTALL_HINT = "npm ci --prefix web"


def _file_response(path: Path, cache_control: str) -> Response:
    body = path.read_bytes()
    return Response(body, status=200, headers={
        "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        "Cache-Control": cache_control,
    })


def static_path(name: str) -> Path | None:
    """``node/static/<name>`` if it is a plain file name there; None for anything else."""
    if "/" in name or name.startswith(".") or not name:
        return None
    path = STATIC_DIR / name
    return path if path.is_file() else None


def register(app, ctx: NodeContext) -> None:
    @app.get("/")
    async def index():
        return _file_response(STATIC_DIR / "index.html", "no-cache")

    @app.get("/static/vendor/<name>")
    async def vendor(name: str):
        path = VENDOR.get(name)
        if path is None:
            raise ApiError(404, "not_found", "no such file")
        if not path.is_file():
            raise ApiError(503, "not_installed", f"{name} is not installed on node {ctx.node_id}: "
                           f"run `{INSTALL_HINT}` in the repository", retry_after=60)
        return _file_response(path, "public, max-age=3600")

    @app.get("/static/<name>")
    async def static(name: str):
        path = static_path(name)
        if path is None:
            raise ApiError(404, "not_found", "no such file")
        return _file_response(path, "no-cache")
