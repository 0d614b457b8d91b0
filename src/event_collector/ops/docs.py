"""The interactive API documentation (Swagger UI at ``/docs``, ReDoc at ``/redoc``), with every
asset served by the service itself.

FastAPI's default pages load their JavaScript, CSS, favicon and fonts from CDNs, so they are
blank wherever the service has no internet (an operator's laptop on a plane, a locked-down
network). The assets are vendored under ``ops/static`` (versions and licences: its README.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/docs-assets"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


def install_docs(app: FastAPI) -> None:
    """Serve the documentation pages and their assets. The app must be built with
    ``docs_url=None, redoc_url=None`` so these replace FastAPI's CDN-backed pages."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="docs-assets")


@router.get(DOCS_PATH)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Event Collector API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
        oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        # The validator badge is an image fetched from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_PATH)
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Event Collector API",
        redoc_js_url=f"{ASSETS_PATH}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
