"""The review app: lists audits, shows reports, records review decisions (FastAPI + SQLAlchemy).

Routes: GET / (index, live from the DB), GET /audits/{id} (report + review history
and form), GET /audits/{id}/files/{path} (files beside the report),
POST /audits/{id}/review, GET /compare?a=..&b=.., GET /api/audits,
GET /api/audits/{id}/reviews. Audit ids are single path segments inside the
store; anything else is a 404, and file paths may not leave the audit folder.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from imaudit.errors import BadInputError
from imaudit.io import atomic_write_text
from imaudit.reports.compare import compare_html
from imaudit.reports.db import DECISIONS, ReviewStore, db_url_for
from imaudit.reports.index import index_html, index_rows
from imaudit.reports.render import report_html
from imaudit.reports.store import audit_folder, list_audits, load_audit, safe_file
from imaudit.reports.templating import render

log = logging.getLogger(__name__)


def create_app(store: Path, db_url: str | None = None) -> FastAPI:
    """A FastAPI app over the report ``store``; decisions go to ``db_url`` (default SQLite file in the store)."""
    store = Path(store).expanduser().resolve()
    store.mkdir(parents=True, exist_ok=True)
    reviews = ReviewStore(db_url_for(store, db_url))
    # No /docs: Swagger UI pulls assets from a CDN and the app must work offline.
    app = FastAPI(title="imaudit review", docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.reviews = reviews

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        html = render("error.html", status=exc.status_code, message=str(exc.detail), app=True)
        return HTMLResponse(html, status_code=exc.status_code)

    def folder_of(audit_id: str) -> Path:
        folder = audit_folder(store, audit_id)
        if folder is None:
            raise HTTPException(404, f"no audit '{audit_id}' in this store")
        return folder

    def audit_page(audit_id: str, *, form: dict[str, str] | None = None, message: str | None = None,
                   status: int = 200, recorded: bool = False) -> HTMLResponse:
        folder = folder_of(audit_id)
        try:
            result = load_audit(folder)
        except BadInputError as exc:
            raise HTTPException(404, f"audit '{audit_id}' is broken: {exc}") from exc
        base = f"/audits/{quote(audit_id, safe='')}/files/"
        review = {"history": reviews.history(audit_id), "decisions": DECISIONS, "message": message,
                  "form": form or {"decision": "", "reviewer": "", "comment": ""}, "recorded": recorded,
                  "review_action": f"/audits/{quote(audit_id, safe='')}/review"}
        html = report_html(result, folder, base=base, template="app_report.html", redraw=False, store=store,
                           decisions=reviews.latest(), app=review, report_file=base + "report.html")
        return HTMLResponse(html, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(index_html(store, reviews.latest(), app=True))

    @app.get("/audits/{audit_id}", response_class=HTMLResponse)
    def show_audit(audit_id: str, recorded: int = 0) -> HTMLResponse:
        return audit_page(audit_id, recorded=bool(recorded))

    @app.get("/audits/{audit_id}/files/{path:path}")
    def audit_file(audit_id: str, path: str) -> FileResponse:
        target = safe_file(folder_of(audit_id), path)
        if target is None:
            raise HTTPException(404, f"no file '{path}' in audit '{audit_id}'")
        return FileResponse(target)

    @app.post("/audits/{audit_id}/review")
    def record_review(audit_id: str, decision: str = Form(""), reviewer: str = Form(""),
                      comment: str = Form("")) -> Response:
        folder_of(audit_id)
        try:
            reviews.add(audit_id, decision, reviewer, comment)
        except BadInputError as exc:
            return audit_page(audit_id, form={"decision": decision, "reviewer": reviewer, "comment": comment},
                              message=str(exc), status=422)
        _refresh_static_index(store, reviews)
        # ?recorded=1 shows the confirmation above the review history.
        return RedirectResponse(f"/audits/{quote(audit_id, safe='')}?recorded=1#review", status_code=303)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(a: str = "", b: str = "") -> HTMLResponse:
        if not a or not b:
            raise HTTPException(400, "compare needs two audit ids: /compare?a=ID&b=ID")
        fa, fb = folder_of(a), folder_of(b)
        try:
            html = compare_html(fa, fb, a_href=f"/audits/{quote(a, safe='')}", b_href=f"/audits/{quote(b, safe='')}",
                                app=True, a_files=f"/audits/{quote(a, safe='')}/files/",
                                b_files=f"/audits/{quote(b, safe='')}/files/")
        except BadInputError as exc:
            raise HTTPException(404, str(exc)) from exc
        return HTMLResponse(html)

    @app.get("/api/audits")
    def api_audits() -> list[dict[str, Any]]:
        rows = index_rows(list_audits(store), reviews.latest(), app=True)
        return [dataclasses.asdict(r) for r in rows]

    @app.get("/api/audits/{audit_id}/reviews")
    def api_reviews(audit_id: str) -> list[dict[str, Any]]:
        folder_of(audit_id)
        return [dataclasses.asdict(d) for d in reviews.history(audit_id)]

    return app


def _refresh_static_index(store: Path, reviews: ReviewStore) -> None:
    """Keep store/index.html in step with the DB after a decision (the app itself renders live)."""
    try:
        atomic_write_text(store / "index.html", index_html(store, reviews.latest()))
    except OSError as exc:  # a read-only store still records decisions; say so in the log
        log.warning("could not refresh %s: %s", store / "index.html", exc)


def serve(store: Path, host: str = "127.0.0.1", port: int = 8765, db_url: str | None = None) -> None:
    """Run the review app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(store, db_url), host=host, port=port, log_level="info")
