"""`/docs`: Swagger UI for the OpenAPI document, served from this process, not a CDN.

FastAPI's default page loads Swagger UI from a CDN, so it stays blank for a browser without
internet access (an operator's console on a closed network). The assets come from the
`fastapi-swagger` package (Swagger UI 5, which reads OpenAPI 3.1) and are served under
`/docs/assets/`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve `/docs` and its assets on `app` (created with `docs_url=None`)."""
    resources = Path(str(files("fastapi_swagger") / "resources"))
    app.mount(ASSETS, StaticFiles(directory=resources), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
