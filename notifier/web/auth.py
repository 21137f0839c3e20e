"""Console sign-in: sessions, CSRF tokens, roles, one-time links and the failed-token limit.

Sessions are rows in the database (`console_sessions`), named by a random id that the cookie
carries signed with itsdangerous (key derived from the admin token). Rows rather than a
self-contained cookie (aiohttp-session's cookie storages), because sign-out must end the
session for real: a deleted row cannot be replayed by a copied cookie, and rotating the
admin token ends every session at once. A row also keeps a keyed fingerprint of the token
it signed in with, so changing the viewer token ends the viewers' sessions too.

The failed-token limit lives in the database as well (`signin_failures`), so that instances
sharing it count the same failures, however requests are spread. It guards every secret a
client can guess over HTTP: the console's sign-in form and the admin API's bearer token
(scope "admin": both try the admin token) and the calendar feed's token (scope "calendar").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, Signer, TimestampSigner
from pydantic import SecretStr

from notifier.config import Settings
from notifier.errors import StoreError
from notifier.ledger.console import Attempt, ConsoleStore

SESSION_COOKIE = "notifier_session"
# The sign-in form's browser binding (double-submit): a random value in this cookie, and in
# the form a signed digest of it. A form token fetched by another browser (login CSRF: an
# attacker's page posting its own viewer token) does not match this browser's cookie.
SIGNIN_COOKIE = "notifier_signin"
# A working day and some: staff sign in each morning.
SESSION_SECONDS = 10 * 3600
# The sign-in form's token is valid this long (a page left open over lunch still works).
SIGNIN_FORM_SECONDS = 4 * 3600
# A one-time sign-in link (printed at start when no admin token is set) is good this long:
# enough to open it after reading the start-up log, short for a link that sits in a log.
SIGNIN_LINK_SECONDS = 15 * 60
SIGNIN_LINK_PATH = "/signin/once"
# Failed token attempts from one address, per scope: at most this many per window, then 429
# until the oldest leaves it. Counted in the database, across every instance that shares it
# (migrations 0012, 0013).
MAX_FAILED_SIGNINS = 5
FAILED_SIGNIN_WINDOW = 300.0
CSRF_FIELD = "csrf"

ROLE_ADMIN = "admin"
ROLE_VIEWER = "viewer"
# Edits events and audiences; no sends, retries, holiday imports or audit log.
ROLE_EDITOR = "editor"
# The secrets the limit counts apart: the admin token (console form, API bearer, /readyz
# detail) and the calendar token (feed clients keep polling with a rotated token: their
# failures must not lock the office's address out of the console).
SCOPE_ADMIN = "admin"
SCOPE_CALENDAR = "calendar"


@dataclass(frozen=True, slots=True)
class Session:
    role: str
    csrf: str
    id_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def can_edit(self) -> bool:
        """Events and audiences may be changed (admins and editors)."""
        return self.role in (ROLE_ADMIN, ROLE_EDITOR)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class FailedTokens:
    """The failed-token limit: a sliding window of failures per scope and client address,
    kept in the database so that every instance on it counts the same failures.

    A success clears nothing: failures leave the window by age only, so a viewer signing in
    (or a calendar client polling with the right token) cannot reset the count of someone at
    the same address guessing the admin token. Times are the app's clock (wall time, shared
    by the instances).

    While the database cannot count (an outage), this instance counts in memory with the same
    limit and window: the admin must still read /readyz's detail, which says what is wrong,
    and a guesser gains no more than one instance's limit for the outage's length.
    """

    def __init__(
        self,
        store: ConsoleStore,
        *,
        limit: int = MAX_FAILED_SIGNINS,
        window: float = FAILED_SIGNIN_WINDOW,
    ) -> None:
        self.store = store
        self.limit = limit
        self.window = window
        # Failures counted here while the database is away, by (scope, client): their times.
        self._here: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    async def attempt(
        self, scope: str, client: str, *, now: float, check: Callable[[], bool]
    ) -> Attempt:
        """Refused unseen when `client` has too many failures of `scope`; else `check`ed, and
        a failure recorded (in the database; in this instance while it is away)."""
        try:
            return await self.store.try_token(
                scope, client, now=now, limit=self.limit, window=self.window, check=check
            )
        except StoreError:
            return self._attempt_here((scope, client), now=now, check=check)

    def _attempt_here(
        self, key: tuple[str, str], *, now: float, check: Callable[[], bool]
    ) -> Attempt:
        times = [t for t in self._here.pop(key, []) if t > now - self.window]
        try:
            if len(times) >= self.limit:
                return Attempt(wait=max(times[-self.limit] + self.window - now, 1e-3), ok=False)
            if check():
                return Attempt(wait=0.0, ok=True)
            times.append(now)
            return Attempt(wait=0.0, ok=False)
        finally:
            if times:
                self._here[key] = times
                while len(self._here) > FALLBACK_CLIENTS_MAX:
                    self._here.popitem(last=False)


# Clients whose failures one instance keeps in memory during a database outage (the oldest
# forgotten first): bounds memory against a flood of addresses.
FALLBACK_CLIENTS_MAX = 4096

LIMITER_KEY = web.AppKey("failed_tokens", FailedTokens)


def token_matches(given: str, secret: SecretStr | None) -> bool:
    """`given` is the secret, compared in constant time; never when either is empty."""
    if not given or secret is None or not secret.get_secret_value():
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), secret.get_secret_value().encode("utf-8")
    )


def retry_after(wait: float) -> int:
    """Whole seconds for a Retry-After header: never 0 while the limit still refuses."""
    return int(wait) + 1


class Auth:
    """Tokens to roles, signed cookies to sessions, and the forms' CSRF tokens."""

    def __init__(
        self, settings: Settings, store: ConsoleStore, *, server_secret: bytes = b""
    ) -> None:
        """`server_secret` keys the cookies when no admin token is set (the sessions of
        one-time links): a secret of this deployment, shared by its instances."""
        self.settings = settings
        self.store = store
        self.limiter = FailedTokens(store)
        admin = settings.admin_token.get_secret_value().encode() if settings.admin_token else b""
        key = hmac.new(admin or server_secret, b"notifier console session v1", "sha256").digest()
        self._key = key
        self._signer = Signer(key, salt="session")
        self._form_signer = TimestampSigner(key, salt="signin-form")
        self.secure = settings.public_url.lower().startswith("https://")
        # `__Host-`: a sibling subdomain cannot plant its own cookie of this name (HTTPS only).
        self.signin_cookie = ("__Host-" if self.secure else "") + SIGNIN_COOKIE

    @property
    def enabled(self) -> bool:
        """Whether sign-in with a token is possible (else only with a one-time link)."""
        return self.settings.admin_token is not None

    def role_for(self, token: str) -> str | None:
        """The role a token signs in as, compared in constant time; None if neither."""
        role = None
        for name, secret in (
            (ROLE_ADMIN, self.settings.admin_token),
            (ROLE_VIEWER, self.settings.viewer_token),
            (ROLE_EDITOR, self.settings.editor_token),
        ):
            if token_matches(token, secret):
                role = role or name
        return role

    def token_fingerprint(self, role: str) -> str | None:
        """A keyed digest of the role's current token (None: the role has no token now).

        Kept in each session: a session whose role's token has changed since it signed in
        no longer matches and ends. Keyed, so the database alone does not offer a way to
        test guesses of the token. An admin without a token (a one-time link's session)
        fingerprints the empty token: setting one ends those sessions.
        """
        secret = {
            ROLE_ADMIN: self.settings.admin_token,
            ROLE_VIEWER: self.settings.viewer_token,
            ROLE_EDITOR: self.settings.editor_token,
        }.get(role)
        if secret is None and role != ROLE_ADMIN:
            return None
        value = secret.get_secret_value().encode() if secret is not None else b""
        return hmac.new(self._key, role.encode() + b"\0" + value, "sha256").hexdigest()[:32]

    # --- the sign-in form's token (no session yet), bound to the browser ---

    def _binding(self, browser: str) -> str:
        return hmac.new(self._key, b"signin-form\0" + browser.encode(), "sha256").hexdigest()

    def signin_browser(self, request: web.Request) -> str | None:
        """The browser's sign-in cookie, when it holds one of ours."""
        value = request.cookies.get(self.signin_cookie, "")
        return value if 16 <= len(value) <= 64 and value.isascii() else None

    def signin_form_token(self, browser: str) -> str:
        return self._form_signer.sign(self._binding(browser)).decode()

    def set_signin_cookie(self, response: web.StreamResponse, browser: str) -> None:
        response.set_cookie(
            self.signin_cookie,
            browser,
            max_age=SIGNIN_FORM_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )

    def check_signin_form_token(self, request: web.Request, token: str) -> bool:
        """The form's token is ours, recent, and was made for this browser's cookie."""
        browser = self.signin_browser(request)
        if browser is None or not token:
            return False
        try:
            bound = self._form_signer.unsign(token, max_age=SIGNIN_FORM_SECONDS)
        except BadSignature:
            return False
        return hmac.compare_digest(bound, self._binding(browser).encode())

    # --- one-time sign-in links (no admin token set) ---

    async def issue_signin_link(self, *, now: float) -> str:
        """A new link token, good once within SIGNIN_LINK_SECONDS (its hash is stored)."""
        token = secrets.token_urlsafe(32)
        await self.store.create_signin_link(
            _hash(token), now=now, expires_at=now + SIGNIN_LINK_SECONDS
        )
        return token

    async def use_signin_link(self, token: str, *, now: float) -> bool:
        if not token or len(token) > 128 or not token.isascii():
            return False
        return await self.store.use_signin_link(_hash(token), now=now)

    # --- sessions ---

    async def start(
        self, response: web.StreamResponse, *, role: str, client: str, now: float
    ) -> None:
        session_id = secrets.token_urlsafe(32)
        await self.store.create_session(
            _hash(session_id),
            role=role,
            csrf=secrets.token_urlsafe(32),
            client=client,
            now=now,
            expires_at=now + SESSION_SECONDS,
            token_fp=self.token_fingerprint(role) or "",
        )
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.sign(session_id).decode(),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )

    async def session(self, request: web.Request, *, now: float) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or len(cookie) > 512:
            return None
        try:
            session_id = self._signer.unsign(cookie).decode()
        except BadSignature:
            return None
        id_hash = _hash(session_id)
        row = await self.store.get_session(id_hash, now=now)
        if row is None:
            return None
        current = self.token_fingerprint(row.role)
        if current is None or not hmac.compare_digest(row.token_fp, current):
            # The role's token changed (or went) since this session signed in: it ends.
            await self.store.delete_session(id_hash)
            return None
        return Session(row.role, row.csrf, id_hash)

    async def end(self, session: Session, response: web.StreamResponse) -> None:
        await self.store.delete_session(session.id_hash)
        response.del_cookie(SESSION_COOKIE, path="/")


def client_address(request: web.Request) -> str:
    """The peer's address as the socket saw it (a proxy in front would be the peer)."""
    return request.remote or "?"


def csrf_ok(session: Session, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf.encode())
