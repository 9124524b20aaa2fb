"""HTTP hardening for the review app: body limits, security headers with a CSP nonce, origin checks.

Written as small ASGI middleware because no maintained package does these three
together for Starlette: the body limit must act on the raw ASGI stream, before any
form parser could spool to disk; the nonce must reach the templates.
Host checking uses Starlette's TrustedHostMiddleware and proxy headers uvicorn's
ProxyHeadersMiddleware; both are wired in ``reports.app``.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # a review form (comment <= 5,000 characters, a few codes) is far smaller
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
FORM_TYPE = "application/x-www-form-urlencoded"


class BodyTooLarge(Exception):
    """The client sent more bytes than it announced or than the limit allows."""


class BodyLimit:
    """Refuse request bodies before the app reads them.

    Requests that may carry a body must announce their length (411 otherwise), stay
    within ``max_body`` (413) and be URL-encoded forms (415): multipart parsing, the one
    path that writes uploads to temporary files, is never reached. The stream is
    counted too, so a client cannot send more than it announced.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if "transfer-encoding" in headers or length is None or not length.isdigit():
            await PlainTextResponse("a request body needs a Content-Length", 411)(scope, receive, send)
            return
        if int(length) > self.max_body:
            await PlainTextResponse(f"request body over {self.max_body} bytes", 413)(scope, receive, send)
            return
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if int(length) and ctype != FORM_TYPE:
            await PlainTextResponse(f"only {FORM_TYPE} bodies are accepted", 415)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > int(length):
                raise BodyTooLarge(f"body longer than its Content-Length ({length})")
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await PlainTextResponse("request body longer than announced", 413)(scope, receive, send)


def csp(nonce: str) -> str:
    """The content security policy of app pages: scripts only with this response's nonce.

    Styles may be inline (the report's <style> block and style attributes; CSS cannot run
    code); images come from the app or are data: URLs; forms post only to the app; no
    page may be framed.
    """
    return "; ".join([
        "default-src 'none'",
        f"script-src 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])


# Files beside a report (figures, a static report.html) are served sandboxed: even an
# HTML file in an audit folder runs no script in the app's origin.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'none'"


class SecurityHeaders:
    """A fresh CSP nonce per request (``request.state.csp_nonce``) and the hardening headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                add: dict[bytes, str] = {
                    b"content-security-policy": csp(nonce),
                    b"x-frame-options": "DENY",
                    b"x-content-type-options": "nosniff",
                    b"referrer-policy": "same-origin",
                    b"cross-origin-opener-policy": "same-origin",
                    b"cross-origin-resource-policy": "same-origin",
                    b"cache-control": "no-store",
                }
                if https:
                    add[b"strict-transport-security"] = "max-age=31536000"
                raw += [(k, v.encode("latin-1")) for k, v in add.items() if k not in names]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)


def request_origin(request: Request) -> str | None:
    """The origin a state-changing request claims: the Origin header, else the Referer's origin."""
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("referer"):
        parts = urlsplit(request.headers["referer"])
        origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
    return origin


def same_origin(request: Request) -> bool:
    """True when the request says it comes from a page of this app (scheme, host and port all equal).

    Browsers send Origin with every cross-site POST; a request with neither Origin
    nor Referer is refused (OWASP's advice for the verifying-origin defence).
    """
    origin = request_origin(request)
    host = request.headers.get("host")
    if not origin or origin == "null" or not host:
        return False
    return origin.lower() == f"{request.url.scheme}://{host}".lower()


class PeerAddress:
    """Keeps the direct peer's address (``scope['state']['peer']``) before proxy headers replace the client.

    The single-sign-on header is trusted only from configured proxies, so the check
    needs the address of the connection itself, not the one a proxy claims.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            scope.setdefault("state", {})["peer"] = client[0] if client else ""
        await self.app(scope, receive, send)
