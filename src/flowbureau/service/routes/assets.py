"""Static files: the console's own CSS/JS, and third-party assets served from the installed
packages that ship them (plotly.js from ``plotly``, Swagger UI and ReDoc from
``fastapi-offline``); nothing third-party is committed, nothing is fetched from a CDN.

Only listed files are served (no path from the URL reaches the file system), with a day of
browser caching.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from flowbureau.errors import NotFoundError

router = APIRouter(include_in_schema=False)

_CACHE = "public, max-age=86400"
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
OWN_STATIC = ("console.css", "console.js", "docs.js")
VENDOR = {
    "plotly.min.js": ("plotly", "package_data/plotly.min.js"),
    "swagger-ui-bundle.js": ("fastapi_offline", "static/swagger-ui-bundle.js"),
    "swagger-ui.css": ("fastapi_offline", "static/swagger-ui.css"),
    "redoc.standalone.js": ("fastapi_offline", "static/redoc.standalone.js"),
    "favicon.png": ("fastapi_offline", "static/favicon.png"),
}
"""Third-party files: served name -> (installed package, path inside it)."""


@cache
def _package_file(package: str, inner: str) -> Path:
    return Path(str(resources.files(package).joinpath(inner)))


def _file(path: Path) -> FileResponse:
    if not path.is_file():
        raise NotFoundError(f"no such asset {path.name}")
    return FileResponse(
        path,
        media_type=_MEDIA.get(path.suffix, "application/octet-stream"),
        headers={"Cache-Control": _CACHE},
    )


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The browser's tab icon."""
    return _file(_package_file(*VENDOR["favicon.png"]))


@router.get("/static/{name}")
def own_static(name: str) -> FileResponse:
    """The console's stylesheet and scripts."""
    if name not in OWN_STATIC:
        raise NotFoundError(f"no such asset {name}")
    return _file(_package_file("flowbureau.service", f"static/{name}"))


@router.get("/static/vendor/{name}")
def vendor_static(name: str) -> FileResponse:
    """A third-party asset from the installed package that ships it."""
    if name not in VENDOR:
        raise NotFoundError(f"no such asset {name}")
    return _file(_package_file(*VENDOR[name]))


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowbureau API</title>
<link rel="icon" href="/static/vendor/favicon.png">
<link rel="stylesheet" href="/static/vendor/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="/static/vendor/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowbureau API</title>
<link rel="icon" href="/static/vendor/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/static/vendor/redoc.standalone.js"></script></body></html>
"""


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, every asset served by this server."""
    return HTMLResponse(_DOCS_PAGE)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc for ``/openapi.json``, every asset served by this server."""
    return HTMLResponse(_REDOC_PAGE)
