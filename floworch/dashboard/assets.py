"""Serving the dashboard: ``/`` answers the page, ``/assets/<version>/...`` its files.

The files ship inside the package (``floworch/dashboard/static``): ES modules, one stylesheet,
no build step and nothing fetched from elsewhere. ``<version>`` is a digest of every file, so a
new floworch release changes every asset URL at once: assets are cached for a year
(``immutable``) and the page itself is never cached. The page refers to its assets by relative
URLs, so the dashboard also works under a path prefix (a Function App's route prefix).

The page tells its scripts how the API is guarded (:class:`DashboardAuth`): by floworch's bearer
tokens, or by a Function App's function key, which the Functions host checks (in the
``x-functions-key`` header) before floworch sees the request.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path
from fastapi.responses import HTMLResponse, Response

from floworch.api.problems import ProblemError, install_problem_handlers

STATIC_PACKAGE = "floworch.dashboard"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
VERSION_MARK = "__ASSET_VERSION__"
AUTH_MARK = "__API_AUTH__"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class DashboardAuth(StrEnum):
    """What the page sends its API requests with, and asks for when one answers 401."""

    BEARER = "bearer"
    """``Authorization: Bearer <token>``: floworch's own tokens (``floworch serve``, a worker)."""
    FUNCTION_KEY = "function-key"
    """``x-functions-key: <key>``: a Function App, whose host refuses an API request without
    a function key before it reaches floworch."""


@dataclass(frozen=True)
class DashboardAssets:
    """The dashboard's files read once at start-up, and the version digest of all of them."""

    files: dict[str, bytes]
    version: str

    @classmethod
    def load(cls) -> DashboardAssets:
        """Reads every file under ``floworch/dashboard/static``.

        Raises:
            FileNotFoundError: the package was installed without its static files.
        """
        root = resources.files(STATIC_PACKAGE).joinpath("static")
        files: dict[str, bytes] = {}
        _collect(root, "", files)
        if "index.html" not in files:
            raise FileNotFoundError(
                "floworch/dashboard/static/index.html is missing: reinstall floworch"
            )
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name] + b"\0")
        return cls(files=files, version=digest.hexdigest()[:12])

    def page(self, auth: DashboardAuth = DashboardAuth.BEARER) -> bytes:
        """The HTML page with its asset URLs pointing at this version, saying how the API is
        guarded (``<meta name="floworch-auth">``)."""
        page = self.files["index.html"].replace(VERSION_MARK.encode(), self.version.encode())
        return page.replace(AUTH_MARK.encode(), auth.value.encode())


def _collect(node: Traversable, prefix: str, files: dict[str, bytes]) -> None:
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.is_dir():
            _collect(child, f"{name}/", files)
        elif not child.name.startswith("."):
            files[name] = child.read_bytes()


def _content_type(name: str) -> str:
    for suffix, kind in _TYPES.items():
        if name.endswith(suffix):
            return kind
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def dashboard_router(
    assets: DashboardAssets, *, auth: DashboardAuth = DashboardAuth.BEARER
) -> APIRouter:
    """The dashboard's routes (outside the OpenAPI document: they are not API)."""
    router = APIRouter(include_in_schema=False)
    page = assets.page(auth)

    @router.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": _CSP,
                **SECURITY_HEADERS,
            },
        )

    @router.get("/assets/{version}/{name:path}")
    async def asset(
        version: Annotated[str, Path(max_length=64)],
        name: Annotated[str, Path(max_length=200)],
    ) -> Response:
        body = assets.files.get(name)
        if body is None or name == "index.html":
            raise ProblemError(404, f"no dashboard asset {name!r}")
        # An old page asking for its own version's files gets the current ones, uncached,
        # rather than a page broken half way through an upgrade.
        fresh = version == assets.version
        cache = "public, max-age=31536000, immutable" if fresh else "no-cache"
        return Response(
            body,
            media_type=_content_type(name),
            headers={"Cache-Control": cache, **SECURITY_HEADERS},
        )

    return router


def mount_dashboard(app: FastAPI, assets: DashboardAssets | None = None) -> None:
    """Serves the dashboard at ``/`` of an API app built by :func:`floworch.api.create_app`."""
    app.include_router(dashboard_router(assets or DashboardAssets.load()))


def dashboard_app(*, auth: DashboardAuth, assets: DashboardAssets | None = None) -> FastAPI:
    """An ASGI app serving the dashboard's page and files and nothing else (no API, no data).

    A Function App serves it from its anonymous dashboard functions, so that a browser loads the
    page and its ES modules without a function key (module imports cannot carry a header).
    """
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_problem_handlers(app)
    app.include_router(dashboard_router(assets or DashboardAssets.load(), auth=auth))
    return app
