"""Who may use the dashboard, and how. Every request for data or a change needs a
credential, on loopback too (any local user can reach a loopback port):

- `Authorization: Bearer TOKEN`, for scripts: TOKEN is the home's dashboard token
  (aios.home.dashboard_token); such a request needs nothing else.
- A session cookie, for the page: POST /api/login {"token"} (sent by the page itself, from
  the login link `http://HOST:PORT/#token=TOKEN` or the login form) makes a random
  session that ends SESSION_IDLE after its last use, SESSION_LIFE after the login, or at
  POST /api/logout. The cookie is HttpOnly, SameSite=Strict, and Secure when
  the request came through TLS (a proxy saying `X-Forwarded-Proto: https`). A change
  (always a POST) made with a cookie must also come from this origin (Origin, else
  Referer) and carry the session's own CSRF token in `X-CSRF-Token`, which is only ever
  handed to that session.

Failed token attempts are throttled per client address and for the server as a whole
(`Throttle`): past the budget, attempts are refused (429) without being checked. Tokens
are compared in constant time, as digests. Imports nothing from aios.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE = 12 * 3600.0        # a session unused this long is over
SESSION_LIFE = 7 * 86400.0        # and any session this long after its login
SESSION_MAX = 1024                # sessions whose last use is remembered (the oldest is forgotten)
ENDED_MAX = 4096                  # logged-out sessions remembered until they expire

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

    def __init__(self, code: int, message: str, headers: tuple = ()):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers


BEARER = "bearer"     # the credential of a request that sent the token itself


class Bucket:
    """A token bucket: `burst` failures at once, then one per `every` seconds."""

    __slots__ = ("level", "at")

    def __init__(self, burst: int, now: float):
        self.level, self.at = float(burst), now

    def refill(self, burst: int, every: float, now: float) -> float:
        self.level, self.at = min(float(burst), self.level + (now - self.at) / every), now
        return self.level


class Throttle:
    """Budgets of failed token attempts, per client address and in all. `check` refuses
    (429) a client whose budget or the global one is spent; `failed` spends from both."""

    CLIENT = (10, 3.0)          # burst, seconds per further attempt
    GLOBAL = (60, 1.0)
    CLIENTS_MAX = 4096          # addresses remembered; full buckets are forgotten first

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.clients: dict[str, Bucket] = {}
        self.all = Bucket(self.GLOBAL[0], clock())

    def check(self, client: str) -> None:
        now = self.clock()
        if self.all.refill(*self.GLOBAL, now) < 1:
            raise self._refusal("this dashboard", self.GLOBAL[1])
        bucket = self.clients.get(client)
        if bucket is not None and bucket.refill(*self.CLIENT, now) < 1:
            raise self._refusal(f"{client[:60]}", self.CLIENT[1])

    def failed(self, client: str) -> None:
        now = self.clock()
        if client not in self.clients:
            self._make_room(now)
            self.clients[client] = Bucket(self.CLIENT[0], now)
        for bucket, (burst, every) in ((self.clients[client], self.CLIENT), (self.all, self.GLOBAL)):
            bucket.refill(burst, every, now)
            bucket.level = max(0.0, bucket.level - 1)

    def _make_room(self, now: float) -> None:
        if len(self.clients) < self.CLIENTS_MAX:
            return
        full = [k for k, b in self.clients.items() if b.refill(*self.CLIENT, now) >= self.CLIENT[0]]
        for key in full or [next(iter(self.clients))]:
            del self.clients[key]

    @staticmethod
    def _refusal(who: str, every: float) -> Refused:
        wait = max(1, round(every))
        return Refused(429, f"too many wrong tokens from {who}; try again in {wait} s",
                       (("Retry-After", str(wait)),))


class Session:
    """A browser's login, as its cookie proves it: its id, its expiry, its CSRF token."""

    __slots__ = ("sid", "expires", "csrf")

    def __init__(self, sid: str, expires: int, csrf: str):
        self.sid, self.expires, self.csrf = sid, expires, csrf


class Guard:
    """The rules for one dashboard: its token, its sessions, its throttle.

    A session cookie is `ID.EXPIRES.MAC`: a random id, the moment it ends, and a MAC of
    both keyed by the token, so a restarted web_server still knows it (and a new token
    ends every session). The CSRF token of a session is a MAC of its id. In memory are
    only when each session was last used (SESSION_MAX of them, for the idle limit) and
    the sessions ended by logging out until they expire."""

    def __init__(self, token: str, cookie: str = "aios_session", clock=time.time):
        self.digest = _digest(token)
        self.key = hmac.new(token.encode("utf-8", errors="surrogatepass"), b"aios dashboard sessions",
                            hashlib.sha256).digest()
        self.cookie, self.clock = cookie, clock
        self.seen: dict[str, float] = {}       # session id -> last use, oldest first
        self.ended: dict[str, int] = {}        # session id -> its expiry: logged out
        self.throttle = Throttle(time.monotonic if clock is time.time else clock)

    def authenticate(self, headers, client: str):
        """BEARER or the request's Session; Refused 401 (no or a wrong credential) or
        429 (too many wrong tokens)."""
        given = _bearer(headers.get("Authorization") or "")
        if given is not None:
            self._check_token(given, client)
            return BEARER
        session = self.session(headers)
        if session is None:
            raise Refused(401, "log in first: open the link `aios dashboard` prints, or send "
                               "Authorization: Bearer TOKEN")
        return session

    def session(self, headers) -> Session | None:
        """The live session the request's cookie proves, if any."""
        sid, expires = self._verify(_cookie(headers.get("Cookie") or "", self.cookie) or "")
        now = self.clock()
        if sid is None or expires <= now or sid in self.ended:
            return None
        if now - self.seen.pop(sid, now) > SESSION_IDLE:
            self.ended[sid] = expires
            return None
        self._remember(self.seen, sid, now)
        return Session(sid, expires, self._mac("csrf", sid))

    def check_write(self, headers, credential) -> None:
        """A change: the token in the header, or a session's own page (same origin and
        that session's CSRF token)."""
        if credential is BEARER:
            return
        check_origin(headers)
        if not hmac.compare_digest((headers.get(CSRF_HEADER) or "").encode(), credential.csrf.encode()):
            raise Refused(403, f"missing or stale {CSRF_HEADER}; reload the page")

    def login(self, headers, client: str, token: object, secure: bool) -> tuple[Session, str]:
        """A new session and its Set-Cookie value, for the right token sent from this
        origin; Refused otherwise."""
        check_origin(headers)
        if not isinstance(token, str):
            raise Refused(400, 'send the token as {"token": "..."}')
        self._check_token(token, client)
        sid, expires = secrets.token_urlsafe(24), int(self.clock() + SESSION_LIFE)
        self._remember(self.seen, sid, self.clock())
        value = f"{sid}.{expires}.{self._mac('session', f'{sid}.{expires}')}"
        flags = f"Path=/; Max-Age={int(SESSION_LIFE)}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        return Session(sid, expires, self._mac("csrf", sid)), f"{self.cookie}={value}; {flags}"

    def logout(self, credential) -> str:
        """End the session (a bearer has none); the Set-Cookie value that clears it."""
        if credential is not BEARER:
            self.seen.pop(credential.sid, None)
            now = self.clock()
            for sid in [s for s, expires in self.ended.items() if expires <= now]:
                del self.ended[sid]
            self._remember(self.ended, credential.sid, credential.expires, ENDED_MAX)
        return f"{self.cookie}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"

    def _check_token(self, given: str, client: str) -> None:
        self.throttle.check(client)
        if not hmac.compare_digest(_digest(given), self.digest):
            self.throttle.failed(client)
            raise Refused(401, "wrong token; `aios dashboard` prints the right login link")

    def _verify(self, value: str) -> tuple[str | None, int]:
        sid, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        if not (sid and expires.isdigit() and len(expires) < 16):
            return None, 0
        if not hmac.compare_digest(mac.encode(), self._mac("session", f"{sid}.{expires}").encode()):
            return None, 0
        return sid, int(expires)

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self.key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _remember(table: dict, key: str, value, most: int = SESSION_MAX) -> None:
        table[key] = value
        while len(table) > most:
            del table[next(iter(table))]


def check_origin(headers) -> None:
    """The request comes from a page of this origin: Origin (else Referer) names the host
    the request was sent to, as Host says or, behind a proxy that changes Host, as
    X-Forwarded-Host says (a page of another site cannot send that header without a
    CORS preflight, which this server never grants)."""
    hosts = {(headers.get(name) or "").strip().lower() for name in ("Host", "X-Forwarded-Host")} - {""}
    origin = headers.get("Origin")
    if origin is None or origin == "null":
        origin = headers.get("Referer") or ""
    if urlsplit(origin).netloc.lower() not in hosts:
        raise Refused(403, "cross-origin request refused: POST from the dashboard's own page, "
                           "or send Authorization: Bearer TOKEN")


def through_tls(headers) -> bool:
    """The browser reached us over TLS, by a proxy's word. Anyone may say so; it only
    makes the cookie Secure (never sent over plain HTTP), which cannot help an attacker."""
    return (headers.get("X-Forwarded-Proto") or "").strip().lower() == "https"


def mask_env(spec: dict) -> dict:
    """A job's aios.toml table with the values of its `env` masked, as CI systems show
    secrets: the names stay, the values do not leave the machine's owner."""
    env = spec.get("env")
    if not isinstance(env, dict):
        return spec
    return {**spec, "env": {name: "***" for name in env}}


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _cookie(value: str, name: str) -> str | None:
    try:
        morsel = SimpleCookie(value).get(name)
    except CookieError:
        return None
    return morsel.value if morsel else None
