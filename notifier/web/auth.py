"""Console sign-in: sessions, CSRF tokens, roles and the failed sign-in limit.

Sessions are rows in the database (`console_sessions`), named by a random id that the cookie
carries signed with itsdangerous (key derived from the admin token). Rows rather than a
self-contained cookie (aiohttp-session's cookie storages), because sign-out must end the
session for real: a deleted row cannot be replayed by a copied cookie, and rotating the
admin token ends every session at once. The failed sign-in limit lives there too, so that
instances sharing the database count the same failures, however requests are spread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, Signer, TimestampSigner

from notifier.config import Settings
from notifier.ledger.console import ConsoleStore

SESSION_COOKIE = "notifier_session"
# A working day and some: staff sign in each morning.
SESSION_SECONDS = 10 * 3600
# The sign-in form's token is valid this long (a page left open over lunch still works).
SIGNIN_FORM_SECONDS = 4 * 3600
# Failed sign-ins from one address: at most this many per window, then 429 until it passes.
# Counted in the database, so across every instance that shares it (migration 0012).
MAX_FAILED_SIGNINS = 5
FAILED_SIGNIN_WINDOW = 300.0
CSRF_FIELD = "csrf"

ROLE_ADMIN = "admin"
ROLE_VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Session:
    role: str
    csrf: str
    id_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class FailedSignins:
    """The failed sign-in limit: a sliding window of failures per client address, kept in
    the database (`signin_failures`) so that every instance on it counts the same failures.

    Nothing is held in memory. `admit` counts an attempt before its token is checked, as a
    failure until `succeeded` says otherwise: attempts made at the same moment cannot all
    pass one count. Times are the app's clock (wall time, shared by the instances).
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

    async def admit(self, client: str, *, now: float) -> float:
        """0 when `client` may try now (the try counts as failed until `succeeded`); else the
        seconds until it may. Raises StoreError when the database cannot say."""
        return await self.store.admit_signin(client, now=now, limit=self.limit, window=self.window)

    async def succeeded(self, client: str, *, now: float) -> None:
        """`client` signed in: its failures are forgotten."""
        await self.store.signed_in(client, now=now, window=self.window)


class Auth:
    """Tokens to roles, signed cookies to sessions, and the forms' CSRF tokens."""

    def __init__(self, settings: Settings, store: ConsoleStore) -> None:
        self.settings = settings
        self.store = store
        self.limiter = FailedSignins(store)
        admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
        key = hmac.new(admin.encode(), b"notifier console session v1", "sha256").digest()
        self._signer = Signer(key, salt="session")
        self._form_signer = TimestampSigner(key, salt="signin-form")
        self.secure = settings.public_url.lower().startswith("https://")

    @property
    def enabled(self) -> bool:
        return self.settings.admin_token is not None

    def role_for(self, token: str) -> str | None:
        """The role a token signs in as, compared in constant time; None if neither."""
        given = token.encode("utf-8", "surrogatepass")
        role = None
        for name, secret in (
            (ROLE_ADMIN, self.settings.admin_token),
            (ROLE_VIEWER, self.settings.viewer_token),
        ):
            if secret is not None and secret.get_secret_value():
                if hmac.compare_digest(given, secret.get_secret_value().encode()):
                    role = role or name
        return role

    # --- the sign-in form's token (no session yet) ---

    def signin_form_token(self) -> str:
        return self._form_signer.sign(secrets.token_urlsafe(8)).decode()

    def check_signin_form_token(self, token: str) -> bool:
        try:
            self._form_signer.unsign(token, max_age=SIGNIN_FORM_SECONDS)
        except BadSignature:
            return False
        return True

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
        return None if row is None else Session(row.role, row.csrf, id_hash)

    async def end(self, session: Session, response: web.StreamResponse) -> None:
        await self.store.delete_session(session.id_hash)
        response.del_cookie(SESSION_COOKIE, path="/")


def client_address(request: web.Request) -> str:
    """The peer's address as the socket saw it (a proxy in front would be the peer)."""
    return request.remote or "?"


def csrf_ok(session: Session, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf.encode())
