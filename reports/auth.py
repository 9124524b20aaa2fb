"""Who is asking: the review app's sign-in modes, session cookies, CSRF tokens and sign-in throttling.

Modes, checked in this order on every request:
1. single sign-on: with ``proxy_header`` set, a request whose direct peer is one of
   ``trusted_proxies`` and that carries the header is that identity (role from its
   account, else ``proxy_role``); the header from anyone else is ignored;
2. a session cookie from the sign-in form (accounts with a password);
3. ``insecure_no_auth``: everyone is "anonymous" with the reviewer role (their
   decisions are recorded as unauthenticated and never open the release gate);
4. no account can sign in and no proxy is configured: anonymous read-only viewing;
5. otherwise: nobody (pages send you to /login).

CSRF: a signed-in browser's forms carry its session's token (synchroniser pattern);
forms without a session (sign-in, --insecure-no-auth) carry a random token that must
equal an HttpOnly cookie (double submit). Every POST also needs a same-origin
Origin or Referer (``security.same_origin``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.requests import Request
from starlette.responses import Response

from imaudit.errors import BadInputError
from imaudit.reports.accounts import NAME, Accounts, Identity

SESSION_COOKIE = "imaudit_session"
FORM_COOKIE = "imaudit_form"
ANONYMOUS_READER = Identity("anonymous", "viewer", "none")
ANONYMOUS_REVIEWER = Identity("anonymous", "reviewer", "none")


@dataclass(frozen=True)
class AuthConfig:
    """How the app decides who is asking (see the module docstring)."""

    insecure_no_auth: bool = False
    proxy_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    proxy_role: str = "viewer"
    session_hours: float = 12.0


@dataclass
class Visitor:
    """The identity of a request (None: must sign in), the CSRF token its forms carry, cookies to set."""

    identity: Identity | None
    csrf: str
    session_token: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)


def cookie_name(request: Request, base: str) -> str:
    """``__Host-`` names over HTTPS: the browser then insists on Secure, Path=/ and no Domain."""
    return f"__Host-{base}" if request.url.scheme == "https" else base


def set_cookie(response: Response, request: Request, base: str, value: str, max_age: int | None) -> None:
    """An HttpOnly, SameSite=Lax cookie, Secure whenever the request came over HTTPS."""
    response.set_cookie(cookie_name(request, base), value, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class LoginThrottle:
    """At most ``per_name`` failed sign-ins per (address, name) and ``per_address`` per address in ``window_s``."""

    def __init__(self, per_name: int = 5, per_address: int = 30, window_s: float = 600.0) -> None:
        self.per_name, self.per_address, self.window_s = per_name, per_address, window_s
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def wait_s(self, address: str, name: str) -> float:
        """Seconds until this address may try this name again (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = [self.window_s - (now - q[0]) for key, limit in (((address, name.lower()), self.per_name),
                                                                      ((address, ""), self.per_address))
                     if len(q := self._recent(key, now)) >= limit]
        return max(waits, default=0.0)

    def failed(self, address: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in ((address, name.lower()), (address, "")):
                self._recent(key, now).append(now)

    def succeeded(self, address: str, name: str) -> None:
        with self._lock:
            self._fails.pop((address, name.lower()), None)


def networks(addresses: tuple[str, ...]) -> list[IPv4Network | IPv6Network]:
    """Trusted proxy addresses or CIDR networks; BadInputError naming a bad one."""
    out = []
    for a in addresses:
        try:
            out.append(ip_network(a.strip(), strict=False))
        except ValueError as exc:
            raise BadInputError(f"--trusted-proxy {a!r}: not an IP address or network") from exc
    return out


class Gatekeeper:
    """Resolves each request's Visitor and performs sign-in."""

    def __init__(self, accounts: Accounts, config: AuthConfig) -> None:
        self.accounts = accounts
        self.config = config
        self.throttle = LoginThrottle()
        self._proxies = networks(config.trusted_proxies)

    def from_trusted_proxy(self, request: Request) -> bool:
        try:
            peer = ip_address(self.peer(request))
        except ValueError:
            return False
        return any(peer in net for net in self._proxies)

    def peer(self, request: Request) -> str:
        """The direct peer's address (before proxy headers rewrote the client), as security.PeerAddress kept it."""
        peer = request.scope.get("state", {}).get("peer")
        return peer or (request.client.host if request.client else "")

    def _proxy_identity(self, request: Request) -> Identity | None | bool:
        """The proxy's identity; None when not in proxy mode or not from a trusted proxy; False when refused."""
        cfg = self.config
        if not cfg.proxy_header or not self.from_trusted_proxy(request):
            return None
        name = request.headers.get(cfg.proxy_header)
        if name is None:
            return None
        if not NAME.fullmatch(name.strip()):
            return False
        account = self.accounts.get(name.strip())
        if account is not None and account.disabled:
            return False
        return Identity(name.strip(), account.role if account else cfg.proxy_role, "proxy")

    def visitor(self, request: Request) -> Visitor:
        """Who is asking, by the modes in the module docstring."""
        token = request.cookies.get(cookie_name(request, SESSION_COOKIE))
        proxy_role = self.config.proxy_role if self.config.proxy_header else None
        live = self.accounts.session(token, proxy_role) if token else None
        proxied = self._proxy_identity(request)
        if proxied is False:
            return Visitor(None, "")
        if isinstance(proxied, Identity):
            if live is not None and live[0].name == proxied.name and live[0].auth == "proxy":
                return Visitor(proxied, live[1], token)
            new, csrf = self.accounts.start_session(proxied.name, "proxy", self.config.session_hours)
            return Visitor(proxied, csrf, new, {SESSION_COOKIE: new})
        if live is not None and live[0].auth == "password":
            return Visitor(live[0], live[1], token)
        anonymous = None
        if self.config.insecure_no_auth:
            anonymous = ANONYMOUS_REVIEWER
        elif not self.config.proxy_header and not self.accounts.any_password():
            anonymous = ANONYMOUS_READER
        return self.form_visitor(request, anonymous)

    def form_visitor(self, request: Request, identity: Identity | None) -> Visitor:
        """A visitor without a session: its forms use the double-submit cookie (issued when missing)."""
        csrf = request.cookies.get(cookie_name(request, FORM_COOKIE))
        if csrf and len(csrf) <= 100:
            return Visitor(identity, csrf)
        csrf = secrets.token_urlsafe(32)
        return Visitor(identity, csrf, cookies={FORM_COOKIE: csrf})

    def sign_in(self, request: Request, name: str, password: str) -> tuple[Identity | None, str, float]:
        """(identity, new session token, 0) on success; (None, "", seconds to wait) when refused."""
        # The client's address: behind a trusted proxy, the one it forwarded (not the proxy's, shared by all).
        address, name = (request.client.host if request.client else ""), (name or "").strip()
        wait = self.throttle.wait_s(address, name)
        if wait > 0:
            return None, "", wait
        who = self.accounts.verify(name, password or "")
        if who is None:
            self.throttle.failed(address, name)
            return None, "", 0.0
        self.throttle.succeeded(address, name)
        token, _ = self.accounts.start_session(who.name, "password", self.config.session_hours)
        return who, token, 0.0
