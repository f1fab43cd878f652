"""Who may use the dashboard, and how.

- Without a token it serves loopback only: `check_exposure` refuses any other host, and
  every request must name a loopback host (or the configured one) in its Host header,
  so a DNS-rebinding page cannot reach it under a name of its own.
- With `[web] token`, every /api/ request needs it: `Authorization: Bearer TOKEN` or the
  `aios_token` cookie that POST /api/login sets (a keyed hash of the token, not the
  token itself).
- A POST changes something, so unless it carries the token in the Authorization header
  (which no other site can make a browser send), it must come from this origin (Origin,
  else Referer) and carry the page's CSRF token in `X-CSRF-Token`.
Imports nothing from aios.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

COOKIE = "aios_token"
CSRF_HEADER = "X-CSRF-Token"

HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
     "img-src 'self'; connect-src 'self'; base-uri 'none'; "
     "form-action 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


class Refused(Exception):
    """A request the rules refuse: an HTTP status and a one-line reason."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class ExposureError(Exception):
    """Serving beyond loopback without a token."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise ExposureError(f"refusing to serve the dashboard on {host} without a token: set [web] token "
                            "in aios.toml, or host = \"127.0.0.1\"")


class Guard:
    """The rules for one server: its host, its token (or None) and its CSRF token."""

    def __init__(self, host: str, token: str | None):
        self.host, self.token = host, token
        self.csrf = secrets.token_urlsafe(32)

    def check_host(self, headers) -> None:
        """Without a token, only loopback names (or the configured host) are answered."""
        if self.token:
            return
        name = _hostname(headers.get("Host") or "")
        if not (is_loopback(name) or name == self.host.strip("[]").lower()):
            raise Refused(403, f"unexpected Host header {headers.get('Host')!r}; open the dashboard "
                               "at http://127.0.0.1 or set [web] token")

    def check_read(self, headers) -> str | None:
        """How the request proved it holds the token ("bearer", "cookie"), or None when no
        token is configured; Refused(401) when one is and the request lacks it."""
        if not self.token:
            return None
        if self._matches(_bearer(headers.get("Authorization") or "")):
            return "bearer"
        cookie = _cookie(headers.get("Cookie") or "")
        if cookie and hmac.compare_digest(cookie.encode(), self._session().encode()):
            return "cookie"
        raise Refused(401, "this dashboard needs its token: log in, or send Authorization: Bearer TOKEN")

    def check_write(self, headers) -> None:
        if self.check_read(headers) != "bearer":
            self.check_page(headers)

    def check_page(self, headers) -> None:
        """The request comes from a page of this dashboard: same origin and its CSRF token."""
        self.check_origin(headers)
        if not hmac.compare_digest((headers.get(CSRF_HEADER) or "").encode(), self.csrf.encode()):
            raise Refused(403, f"missing or stale {CSRF_HEADER}; reload the page")

    def check_origin(self, headers) -> None:
        host = (headers.get("Host") or "").lower()
        origin = headers.get("Origin")
        if origin is None or origin == "null":
            origin = headers.get("Referer") or ""
        if not host or urlsplit(origin).netloc.lower() != host:
            raise Refused(403, "cross-origin request refused: POST from the dashboard's own page, "
                               "or send Authorization: Bearer TOKEN")

    def login(self, headers, token: object) -> str:
        """The Set-Cookie value for a correct token; Refused otherwise."""
        self.check_page(headers)
        if not self.token:
            raise Refused(400, "this dashboard has no token to log in with")
        if not isinstance(token, str) or not self._matches(token):
            raise Refused(401, "wrong token")
        return f"{COOKIE}={self._session()}; Path=/; HttpOnly; SameSite=Strict"

    def _session(self) -> str:
        return hmac.new(self.token.encode(), b"aios dashboard session", hashlib.sha256).hexdigest()

    def _matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0].lower()
    return host_header.rsplit(":", 1)[0].lower() if host_header.count(":") == 1 else host_header.lower()


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _cookie(value: str) -> str | None:
    try:
        morsel = SimpleCookie(value).get(COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel else None
