"""The review app: lists audits, shows reports, records sign-off decisions (FastAPI + SQLAlchemy).

Routes: GET/POST /login, POST /logout, GET / (index), GET /audits/{id} (report, review
history, release status and the review form), GET /audits/{id}/files/{path} (files beside
the report, sandboxed), POST /audits/{id}/review, GET /compare?a=..&b=.., GET /api/audits,
GET /api/audits/{id}/reviews, GET /api/gate?release=release:NAME@VERSION, GET /admin
and POST /admin/reviewers/{name}/(disable|enable), GET /healthz.

Every page needs an identity (see ``reports.auth``); recording a decision needs the
reviewer or admin role, a same-origin request and the form's CSRF token; the recorded
reviewer is the identity, never a form field. Hosts outside ``allowed_hosts`` get 400,
request bodies are bounded before they are read (``reports.security``). Audit ids are
single path segments inside the store; file paths may not leave the audit folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from imaudit.audits.result import AuditResult
from imaudit.errors import BadInputError
from imaudit.reports.accounts import Accounts
from imaudit.reports.auth import SESSION_COOKIE, AuthConfig, Gatekeeper, Visitor, set_cookie, tokens_equal
from imaudit.reports.catalog import StoreCatalog
from imaudit.reports.compare import compare_html
from imaudit.reports.db import DECISIONS, DatabaseProblem, ReviewDB, db_url_for, ping
from imaudit.reports.decisions import DecisionLog, Seen
from imaudit.reports.gate import parse_release, related_decisions, verdict
from imaudit.reports.identity import release_of
from imaudit.reports.index import IndexRefresher, index_html, index_rows
from imaudit.reports.page_cache import PageCache
from imaudit.reports.render import report_html
from imaudit.reports.security import FILE_CSP, MAX_BODY, BodyLimit, PeerAddress, SecurityHeaders, same_origin
from imaudit.reports.store import AuditEntry, read_audit, safe_file
from imaudit.reports.templating import render

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class SignInNeeded(Exception):
    """The request has no identity: pages redirect to /login, the API answers 401."""


@dataclasses.dataclass
class Services:
    """What the routes share: the store's catalog, the database's accounts and log, the index refresher."""

    store: Path
    db: ReviewDB
    accounts: Accounts
    log: DecisionLog
    catalog: StoreCatalog
    gatekeeper: Gatekeeper
    refresher: IndexRefresher
    pages: PageCache = dataclasses.field(default_factory=PageCache)


def create_app(store: Path, db_url: str | None = None, *, auth: AuthConfig | None = None,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, max_body: int = MAX_BODY) -> FastAPI:
    """The review app over the report ``store``; accounts and decisions in ``db_url`` (default: SQLite in the store).

    Raises DatabaseProblem when the review database cannot be read, BadInputError for a bad URL.
    """
    store = Path(store).expanduser().resolve()
    store.mkdir(parents=True, exist_ok=True)
    auth = auth or AuthConfig()
    db = ReviewDB(db_url_for(store, db_url))
    ping(db)
    accounts, decision_log, catalog = Accounts(db), DecisionLog(db), StoreCatalog(store)
    svc = Services(store, db, accounts, decision_log, catalog, Gatekeeper(accounts, auth),
                   IndexRefresher(store, lambda: _static_index(svc)))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.refresher.close()
        db.dispose()

    # No /docs: Swagger UI pulls assets from a CDN and the app must work offline.
    app = FastAPI(title="imaudit review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.services = svc
    # Outermost last: peer address, then proxy headers (trusted proxies only), host check, body limit, headers.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_body=max_body)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(auth.trusted_proxies) or [])
    app.add_middleware(PeerAddress)
    _error_handlers(app)
    _account_routes(app, svc)
    _audit_routes(app, svc)
    _api_routes(app, svc)
    return app


# --- shared helpers ------------------------------------------------------------------------------

def page(request: Request, visitor: Visitor | None) -> dict[str, Any]:
    """Template values every app page needs: the CSP nonce, who is signed in, the form token."""
    return {"app": True, "csp_nonce": request.scope.get("state", {}).get("csp_nonce", ""),
            "user": visitor.identity if visitor else None, "csrf_token": visitor.csrf if visitor else ""}


def reply(request: Request, response: Response) -> Response:
    """``response`` with the cookies the request's visitor needs (a new proxy session, a form token)."""
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    if visitor is not None:
        svc: Services = request.app.state.services
        for base, value in visitor.cookies.items():
            max_age = int(svc.gatekeeper.config.session_hours * 3600) if base == SESSION_COOKIE else None
            set_cookie(response, request, base, value, max_age)
    return response


def html(request: Request, text: str, status: int = 200) -> Response:
    return reply(request, HTMLResponse(text, status_code=status))


def visitor_of(request: Request, *, role: str = "viewer") -> Visitor:
    """The request's visitor with at least ``role``: SignInNeeded without an identity, 403 below the role."""
    svc: Services = request.app.state.services
    visitor = svc.gatekeeper.visitor(request)
    request.state.visitor = visitor
    if visitor.identity is None:
        raise SignInNeeded()
    if not visitor.identity.can(role):
        raise HTTPException(403, f"{visitor.identity.name} is a {visitor.identity.role}: this needs the {role} role")
    return visitor


def check_form(request: Request, visitor: Visitor, csrf: str) -> None:
    """A state-changing request must come from this app's own page and carry that page's form token."""
    if not same_origin(request):
        raise HTTPException(403, "cross-origin request refused: decisions can only be made on this app's own pages")
    if not tokens_equal(csrf, visitor.csrf):
        raise HTTPException(403, "the form's security token is missing or expired: reload the page and try again")


def audit_href(audit_id: str) -> str:
    return f"/audits/{quote(audit_id, safe='')}"


def safe_next(target: str | None) -> str:
    """Only local paths after sign-in (no open redirect to another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# --- error pages ---------------------------------------------------------------------------------

def _error_handlers(app: FastAPI) -> None:
    def error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return reply(request, JSONResponse({"detail": message}, status_code=status))
        visitor = getattr(request.state, "visitor", None)
        return html(request, render("error.html", status=status, message=message, **page(request, visitor)), status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(DatabaseProblem)
    async def _db_error(request: Request, exc: DatabaseProblem) -> Response:
        log.error("%s", exc)
        return error(request, 503, str(exc))

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        if request.method != "GET":
            return error(request, 401, "sign in first: anonymous visitors cannot change anything")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


# --- sign-in, sign-out, accounts -----------------------------------------------------------------

def _account_routes(app: FastAPI, svc: Services) -> None:
    gk = svc.gatekeeper

    def login_page(request: Request, visitor: Visitor, *, next_url: str, name: str = "", message: str | None = None,
                   status: int = 200) -> Response:
        text = render("login.html", next_url=safe_next(next_url), name=name, message=message,
                      sso=bool(gk.config.proxy_header), **page(request, visitor))
        return html(request, text, status)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        request.state.visitor = visitor = gk.form_visitor(request, None)
        return login_page(request, visitor, next_url=next)

    @app.post("/login")
    def login(request: Request, name: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
              csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
        request.state.visitor = visitor = gk.form_visitor(request, None)
        check_form(request, visitor, csrf)
        who, token, wait = gk.sign_in(request, name, password)
        if wait:
            return login_page(request, visitor, next_url=next, name=name, status=429,
                              message=f"Too many failed sign-ins: try again in {int(wait // 60) + 1} minutes.")
        if who is None:
            return login_page(request, visitor, next_url=next, name=name, status=401,
                              message="Wrong name or password (or the account is disabled).")
        response = RedirectResponse(safe_next(next), status_code=303)
        set_cookie(response, request, SESSION_COOKIE, token, int(gk.config.session_hours * 3600))
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        visitor = visitor_of(request)
        check_form(request, visitor, csrf)
        if visitor.session_token:
            svc.accounts.end_session(visitor.session_token)
        response = RedirectResponse("/login", status_code=303)
        set_cookie(response, request, SESSION_COOKIE, "", 0)
        return response

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> Response:
        visitor = visitor_of(request, role="admin")
        return html(request, render("admin.html", accounts=svc.accounts.all(), **page(request, visitor)))

    @app.post("/admin/reviewers/{name}/{action}")
    def admin_action(request: Request, name: str, action: str, csrf: Annotated[str, Form()] = "") -> Response:
        visitor = visitor_of(request, role="admin")
        check_form(request, visitor, csrf)
        if action not in ("disable", "enable"):
            raise HTTPException(404, f"no action '{action}'")
        if name == visitor.identity.name:
            raise HTTPException(422, "you cannot disable your own account here (use 'imaudit reviewers')")
        try:
            svc.accounts.set_disabled(name, action == "disable")
        except BadInputError as exc:
            raise HTTPException(404, str(exc)) from exc
        return reply(request, RedirectResponse("/admin", status_code=303))

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", media_type="text/plain")


# --- audits --------------------------------------------------------------------------------------

def _audit_routes(app: FastAPI, svc: Services) -> None:
    def entry_of(audit_id: str) -> AuditEntry:
        entry = svc.catalog.get(audit_id)
        if entry is None:
            raise HTTPException(404, f"no audit '{audit_id}' in this store")
        return entry

    def full_audit(audit_id: str) -> tuple[AuditEntry, AuditResult, str]:
        """The audit as it is on disk now (all sections) and the digest of those bytes; 404 when unreadable."""
        entry = entry_of(audit_id)
        try:
            result, digest = read_audit(entry.folder)
        except BadInputError as exc:
            raise HTTPException(404, f"audit '{audit_id}' has no readable audit.json: {exc}") from exc
        return entry, result, digest

    def audit_page(request: Request, visitor: Visitor, audit_id: str, *, form: dict[str, Any] | None = None,
                   message: str | None = None, status: int = 200, recorded: bool = False) -> Response:
        entry, result, digest = full_audit(audit_id)
        history = svc.log.history(audit_id)
        latest = svc.log.latest()
        entries = svc.catalog.entries()
        release = release_of(result)
        base = f"{audit_href(audit_id)}/files/"
        values = page(request, visitor)
        # The review section (reports/sections/review.py) draws these after the evidence.
        review = {"history": history, "decisions": DECISIONS, "message": message, "recorded": recorded,
                  "form": form or {"decision": "", "comment": "", "ack": []},
                  "review_action": f"{audit_href(audit_id)}/review", "audit_digest": digest,
                  "ack_items": _ack_items(result), "release": release,
                  "related": related_decisions(result, audit_id, entries, latest),
                  "gate": verdict(release, entries, latest) if release else None,
                  "can_review": visitor.identity.can("reviewer"), "user": values["user"],
                  "csrf_token": values["csrf_token"]}
        text = report_html(
            result, entry.folder, base=base, template="app_report.html", redraw=False, store=svc.store,
            decisions=latest, entries=entries, app=review, report_file=base + "report.html",
            **{k: v for k, v in values.items() if k != "app"})
        return html(request, text, status)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        visitor = visitor_of(request)
        last = svc.log.last_id()  # read before the data, so the key never claims newer data than rendered
        generation, entries = svc.catalog.snapshot()
        text = svc.pages.page("index", (generation, last), page(request, visitor), lambda values: index_html(
            svc.store, svc.log.latest(), entries=entries, **values))
        return html(request, text)

    @app.get("/audits/{audit_id}", response_class=HTMLResponse)
    def show_audit(request: Request, audit_id: str, recorded: int = 0) -> Response:
        # ?recorded=1 (the redirect after a decision) shows the confirmation above the decision log.
        return audit_page(request, visitor_of(request), audit_id, recorded=bool(recorded))

    @app.get("/audits/{audit_id}/files/{path:path}")
    def audit_file(request: Request, audit_id: str, path: str) -> Response:
        visitor_of(request)
        target = safe_file(entry_of(audit_id).folder, path)
        if target is None:
            raise HTTPException(404, f"no file '{path}' in audit '{audit_id}'")
        return reply(request, FileResponse(target, headers={"Content-Security-Policy": FILE_CSP}))

    @app.post("/audits/{audit_id}/review")
    def record_review(request: Request, audit_id: str, decision: Annotated[str, Form()] = "",
                      comment: Annotated[str, Form()] = "", ack: Annotated[list[str], Form()] = [],  # noqa: B006
                      audit_digest: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
        visitor = visitor_of(request)
        check_form(request, visitor, csrf)
        if not visitor.identity.can("reviewer"):
            raise HTTPException(403, f"{visitor.identity.name} is a {visitor.identity.role}: "
                                "only reviewers and admins record decisions")
        _entry, result, digest = full_audit(audit_id)
        form = {"decision": decision, "comment": comment, "ack": ack}
        if audit_digest != digest:
            return audit_page(request, visitor, audit_id, form=form, status=409,
                              message="This audit changed since the page was loaded: nothing was recorded. "
                                      "Read the report again, then decide.")
        try:
            svc.log.append(Seen.of(audit_id, result, digest), visitor.identity, decision, comment, ack)
        except BadInputError as exc:
            return audit_page(request, visitor, audit_id, form=form, message=str(exc), status=422)
        svc.refresher.request()
        return reply(request, RedirectResponse(f"{audit_href(audit_id)}?recorded=1#review", status_code=303))

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request, a: str = "", b: str = "") -> Response:
        visitor = visitor_of(request)
        if not a or not b:
            raise HTTPException(400, "compare needs two audit ids: /compare?a=ID&b=ID")
        fa, fb = entry_of(a).folder, entry_of(b).folder
        try:
            text = compare_html(fa, fb, a_href=audit_href(a), b_href=audit_href(b), a_files=f"{audit_href(a)}/files/",
                                b_files=f"{audit_href(b)}/files/", **page(request, visitor))
        except BadInputError as exc:
            raise HTTPException(404, str(exc)) from exc
        return html(request, text)


def _ack_items(result: AuditResult) -> list[dict[str, Any]]:
    """One acknowledgement per error/warning finding code, with its worst severity and its messages."""
    items: dict[str, dict[str, Any]] = {}
    for f in result.findings:
        if f.severity not in ("error", "warning"):
            continue
        item = items.setdefault(f.code, {"code": f.code, "severity": f.severity, "messages": []})
        if f.severity == "error":
            item["severity"] = "error"
        item["messages"].append(f.message)
    return sorted(items.values(), key=lambda i: (i["severity"] != "error", i["code"]))


# --- JSON ----------------------------------------------------------------------------------------

def _api_routes(app: FastAPI, svc: Services) -> None:
    @app.get("/api/audits")
    def api_audits(request: Request) -> Response:
        visitor_of(request)
        rows = index_rows(svc.catalog.entries(), svc.log.latest(), app=True)
        return reply(request, JSONResponse([dataclasses.asdict(r) for r in rows]))

    @app.get("/api/audits/{audit_id}/reviews")
    def api_reviews(request: Request, audit_id: str) -> Response:
        visitor_of(request)
        if svc.catalog.get(audit_id) is None:
            raise HTTPException(404, f"no audit '{audit_id}' in this store")
        return reply(request, JSONResponse([dataclasses.asdict(d) for d in svc.log.history(audit_id)]))

    @app.get("/api/gate")
    def api_gate(request: Request, release: str = "") -> Response:
        visitor_of(request)
        try:
            name = parse_release(release)
        except BadInputError as exc:
            raise HTTPException(400, str(exc)) from exc
        v = verdict(name, svc.catalog.entries(), svc.log.latest())
        return reply(request, JSONResponse({"release": v.release, "passed": v.passed, "reason": v.reason,
                                            "audit_id": v.audit_id, "line": v.line()}))


def _static_index(svc: Services) -> str:
    """store/index.html (static links) from the cached catalog and the decision log."""
    return index_html(svc.store, svc.log.latest(), entries=svc.catalog.entries())


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serving_hosts(host: str, extra: Sequence[str]) -> list[str]:
    """The Host header values the app answers (others get 400, against DNS rebinding).

    Loopback names always; the bind address when it is a specific one; ``extra``
    (the names clients use). A wildcard bind must name its hosts.
    """
    bare = host.strip("[]")
    hosts = list(LOOPBACK_HOSTS)
    if bare in ("0.0.0.0", "::", ""):
        if not extra:
            raise BadInputError(f"--host {host} listens on every interface: name the host names clients use "
                                "with --allowed-host NAME (other Host headers are refused, against DNS rebinding)")
    elif not is_loopback(bare):
        hosts.append(f"[{bare}]" if ":" in bare else bare)
    return hosts + [h.strip().lower() for h in extra if h.strip()]


def exposure_check(host: str, auth: AuthConfig, accounts_configured: bool) -> str | None:
    """Refuse a network bind without authentication; the warning to print, if any.

    Safe default: off loopback, someone must sign in (a password account or the
    single-sign-on proxy) unless --insecure-no-auth says otherwise on purpose.
    """
    if auth.proxy_header and not auth.trusted_proxies:
        raise BadInputError("--proxy-user-header needs --trusted-proxy ADDRESS (the proxy's address): "
                            "the header is trusted only from there")
    if auth.insecure_no_auth:
        return ("--insecure-no-auth: anyone who can reach this port reads every audit and records decisions "
                "as 'anonymous'; such decisions never open 'imaudit gate'")
    if not is_loopback(host) and not accounts_configured and not auth.proxy_header:
        raise BadInputError(f"refusing to serve on {host} without authentication: create a reviewer "
                            "('imaudit reviewers add NAME') or configure --proxy-user-header, or pass "
                            "--insecure-no-auth for a demo (anyone who reaches the port may then record decisions)")
    if not is_loopback(host):
        return (f"serving plain HTTP on {host}: passwords and session cookies cross the network in clear text "
                "unless an HTTPS proxy is in front (see README, 'Review app behind a proxy')")
    return None


def serve(store: Path, host: str = "127.0.0.1", port: int = 8765, db_url: str | None = None, *,
          auth: AuthConfig | None = None, allowed_hosts: Sequence[str] = (),
          say: Callable[[str], None] = print) -> None:
    """Check the exposure, then run the review app with uvicorn until interrupted.

    BadInputError for an unsafe or inconsistent configuration, DatabaseProblem for an
    unreadable review database, both before anything listens.
    """
    import uvicorn

    auth = auth or AuthConfig()
    hosts = serving_hosts(host, allowed_hosts)
    app = create_app(store, db_url, auth=auth, allowed_hosts=hosts)
    warning = exposure_check(host, auth, app.state.services.accounts.any_password())
    if warning:
        say(f"warning: {warning}")
    shown = f"[{host}]" if ":" in host else host
    say(f"review app on http://{shown}:{port}/ over {app.state.services.store}")
    # Proxy headers are handled inside the app (only from --trusted-proxy addresses).
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False)
