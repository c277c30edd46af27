"""`/docs`: Swagger UI for the OpenAPI document, served from this process, not a CDN.

FastAPI's default page loads Swagger UI from a CDN, so it stays blank for a browser without
internet access (an operator's console on a closed network). The assets come from the
`fastapi-swagger` package (Swagger UI 5, which reads OpenAPI 3.1) and are served under
`/docs/assets/`; the page's own start-up script is `api/static/docs.js`, a file, since the
pages' Content-Security-Policy (api/security_headers.py) runs no inline script.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve `/docs` and its assets on `app` (created with `docs_url=None`)."""
    resources = Path(str(files("fastapi_swagger") / "resources"))
    app.mount(ASSETS, StaticFiles(directory=resources), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE.format(title=f"{app.title} — API", assets=ASSETS))


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon-32x32.png">
<title>{title}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""
