"""Whole pages rendered once per state of the store and the decision log, personalised per request.

The index of 1,000 audits takes a few hundred milliseconds to render and is the page
everyone opens. It differs between requests only in the CSP nonce, the CSRF token and
the signed-in name: those are rendered as random placeholders (unguessable, so audit
text can never contain one) and substituted in each response. The role and the kind
of sign-in change the page's shape, so they are part of the key.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Hashable
from typing import Any

from markupsafe import escape

from imaudit.reports.accounts import Identity


class PageCache:
    """The newest rendering per page name; rebuilt when its key changes."""

    def __init__(self) -> None:
        self._pages: dict[str, tuple[Hashable, str]] = {}
        self._lock = threading.Lock()
        token = secrets.token_hex(16)
        self._nonce, self._csrf, self._name = (f"imaudit{kind}{token}" for kind in ("nonce", "csrf", "name"))
        self.renders = 0

    def page(self, name: str, key: Hashable, values: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> str:
        """``render(template values)`` for ``key``, from the cache when the key is unchanged, with ``values`` filled in.

        ``values`` are the app's per-request template values (csp_nonce, csrf_token, user).
        """
        user: Identity | None = values.get("user")
        full_key = (key, user.role if user else None, user.auth if user else None)
        hit = self._pages.get(name)
        if hit is None or hit[0] != full_key:
            placeholders = {**values, "csp_nonce": self._nonce, "csrf_token": self._csrf,
                            "user": Identity(self._name, user.role, user.auth) if user else None}
            text = render(placeholders)
            with self._lock:
                self._pages[name] = hit = (full_key, text)
                self.renders += 1
        text = hit[1].replace(self._nonce, str(values.get("csp_nonce", "")))
        text = text.replace(self._csrf, str(escape(values.get("csrf_token", ""))))
        return text.replace(self._name, str(escape(user.name)) if user else "")
