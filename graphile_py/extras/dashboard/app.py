"""The dashboard's ASGI application: the page, the JSON API, and what guards them.

Every request passes one guard, in this order:

1. **Host.** With ``allowed_hosts`` (the CLI sets the loopback names when it binds to
   loopback), a request for any other host name is refused: a web page cannot then reach
   the dashboard by pointing its own domain at 127.0.0.1 (DNS rebinding).
2. **Credentials.** With a token, everything under ``/api/`` needs ``Authorization:
   Bearer TOKEN`` (the page itself holds no data and loads without it, then asks for the
   token). With basic auth, every request needs it, the page included, so the browser
   prompts. With both, either is accepted. Secrets are compared in constant time.
3. **Cross-site requests.** A POST must be JSON (``Content-Type: application/json``) or
   carry an ``X-Requested-With`` header, which a cross-site form cannot send without a
   CORS preflight that this server never grants; a POST or DELETE with an ``Origin``
   header must come from the dashboard's own host.
4. **Read-only mode.** Without ``allow_actions``, POST and DELETE answer 403.

Responses carry a strict Content-Security-Policy (no inline script, no other origin) and
may not be framed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from graphile_py.admin.inspector import Inspector
from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.db.side_views import NOT_INSTALLED
from graphile_py.errors import (
    ConfigurationError,
    ConnectError,
    DatabaseError,
    GraphileError,
    JobRejected,
)
from graphile_py.extras.dashboard.api import API_PREFIX, DashboardContext, router, version
from graphile_py.extras.dashboard.sampler import DEFAULT_INTERVAL, Sampler

__all__ = ["LOOPBACK_HOSTS", "create_app", "is_loopback"]

logger = logging.getLogger("graphile_py.dashboard")

STATIC = Path(__file__).parent / "static"

#: Host names that reach a loopback-bound dashboard.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # The page may have been opened as /?token=...: never send that URL elsewhere.
    "referrer-policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """True if binding to ``host`` only accepts connections from this machine."""
    import ipaddress

    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def create_app(
    source: Inspector | WorkerUtils,
    *,
    allow_actions: bool = False,
    token: str | None = None,
    basic_auth: str | tuple[str, str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
    crontab: str | None = None,
    sampler: Sampler | None = None,
    sample_interval: float = DEFAULT_INTERVAL,
    payload_schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> FastAPI:
    """The dashboard as a FastAPI application, to serve with uvicorn or any ASGI server.

    ``source`` is an :class:`~graphile_py.admin.inspector.Inspector` or the
    :class:`~graphile_py.WorkerUtils` to build one on; the caller keeps ownership and
    closes it. ``allow_actions`` enables retry, reschedule, remove and enqueue.
    ``token`` and ``basic_auth`` (``"user:password"``) protect it; ``allowed_hosts``
    limits the ``Host`` header. ``crontab`` is the text of a crontab, to show when each
    item next fires (:class:`~graphile_py.CrontabError` if it does not parse). The history
    sampler (given, or made with ``sample_interval``)
    runs while the application does. ``payload_schemas`` are the JSON schemas of typed
    tasks' payloads (``TaskRegistry.payload_schemas()``), served at
    ``/api/payload-schemas``.
    """
    inspector = source if isinstance(source, Inspector) else Inspector(source)
    if token is not None and not token:
        raise ConfigurationError("the dashboard token must not be empty")
    credentials = _basic_credentials(basic_auth)
    if crontab is not None:
        from graphile_py.cron.crontab import parse_crontab

        parse_crontab(crontab)  # a bad crontab fails here, not on every GET /cron
    sampler = sampler or Sampler(inspector.utils, interval=sample_interval)
    context = DashboardContext(
        inspector=inspector,
        sampler=sampler,
        allow_actions=allow_actions,
        crontab=crontab,
        auth=[name for name, on in (("token", token), ("basic", credentials)) if on],
        payload_schemas={name: dict(schema) for name, schema in (payload_schemas or {}).items()},
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(sampler.start)  # its first sample reads the database
        try:
            yield
        finally:
            sampler.stop()

    app = FastAPI(
        title="graphile-py dashboard",
        summary="Inspect and administer a graphile-py / graphile-worker job queue.",
        version=version(),
        openapi_url=f"{API_PREFIX}/openapi.json",
        # Swagger UI and ReDoc load scripts from a CDN; the dashboard must work offline.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.dashboard = context
    app.include_router(router)
    _install_error_handlers(app)

    hosts = {_host_name(host) for host in allowed_hosts} if allowed_hosts is not None else None
    token_bytes = token.encode() if token else None

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        refusal = _refusal(request, hosts, token_bytes, credentials, allow_actions)
        response = refusal or await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["cache-control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _refusal(
    request: Request,
    hosts: set[str] | None,
    token: bytes | None,
    credentials: tuple[bytes, bytes] | None,
    allow_actions: bool,
) -> Response | None:
    """The error response for a request the guard refuses, or None to let it through."""
    if hosts is not None and _host_name(request.headers.get("host", "")) not in hosts:
        return _error(400, "bad_host", "This dashboard does not answer for that host name.")
    is_api = request.url.path.startswith("/api/")
    if (credentials or (token and is_api)) and not _authorised(request, token, credentials):
        challenge = 'Basic realm="graphile-py dashboard"' if credentials else "Bearer"
        response = _error(401, "unauthorized", "Credentials are missing or wrong.")
        response.headers["www-authenticate"] = challenge
        return response
    if request.method in _UNSAFE_METHODS:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return _error(403, "cross_origin", "Cross-origin requests may not change jobs.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if (
            request.method != "DELETE"
            and content_type != "application/json"
            and "x-requested-with" not in request.headers
        ):
            return _error(
                403,
                "csrf",
                "Send the request as JSON (Content-Type: application/json)"
                " or with an X-Requested-With header.",
            )
        if not allow_actions:
            return _error(
                403,
                "read_only",
                "This dashboard is read-only; start it with --allow-actions to change jobs.",
            )
    return None


def _authorised(
    request: Request, token: bytes | None, credentials: tuple[bytes, bytes] | None
) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if token and scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token)
    if credentials and scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            return False
        user, colon, password = decoded.partition(b":")
        # Both comparisons always run, so the time taken says nothing about which failed.
        same_user = hmac.compare_digest(user, credentials[0])
        same_password = hmac.compare_digest(password, credentials[1])
        return bool(colon) and same_user and same_password
    return False


def _basic_credentials(value: str | tuple[str, str] | None) -> tuple[bytes, bytes] | None:
    if value is None:
        return None
    if isinstance(value, str):
        user, colon, password = value.partition(":")
        if not colon:
            raise ConfigurationError("basic auth must be given as USER:PASSWORD")
    else:
        user, password = value
    if not user or not password:
        raise ConfigurationError("basic auth needs a non-empty user and password")
    return user.encode(), password.encode()


def _host_name(host: str) -> str:
    """The host part of a ``Host`` header or host name, lower-cased, without the port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _error(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: _text})
        parts = []
        for error in errors:
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request", detail=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 409: "conflict"}.get(
            exc.status_code, "error"
        )
        response = _error(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(GraphileError)
    async def graphile_error(request: Request, exc: GraphileError) -> Response:
        status, code = _status_for(exc)
        if status >= 500:
            logger.warning("dashboard: %s %s failed: %s", request.method, request.url.path, exc)
        return _error(status, code, exc.message)

    @app.exception_handler(UnicodeError)
    async def unicode_error(request: Request, exc: UnicodeError) -> Response:
        # Lone surrogates in JSON strings decode fine but cannot be sent to PostgreSQL.
        return _error(400, "invalid_text", "A string in the request is not valid Unicode.")


# Database errors by SQLSTATE: what the dashboard answers for them.
_BY_SQLSTATE = {
    "42501": (403, "forbidden_by_database"),  # the dashboard's role may not do this
    # The side schema (worker registry, job history) is missing: graphile-py migrate.
    **dict.fromkeys(NOT_INSTALLED, (503, "not_installed")),
}


def _status_for(exc: GraphileError) -> tuple[int, str]:
    if isinstance(exc, JobRejected | ConfigurationError):
        return 400, "rejected"
    if isinstance(exc, ConnectError):
        return 503, "database_unavailable"
    if isinstance(exc, DatabaseError):
        state = exc.sqlstate or ""
        if state[:2] in {"22", "23"}:  # data exceptions, constraint violations: bad input
            return 400, "rejected"
        return _BY_SQLSTATE.get(state, (503, "database_error"))
    return 400, "rejected"


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")
