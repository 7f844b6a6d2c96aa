"""The Quart-Trio application: routes, request guards, JSON errors.

:func:`create_app` registers small named functions: the request guards (a foreign Host or a
cross-site change to a loopback server without a token, a change without the token), the
security headers, and one error handler per error a request can meet. Admission (how many
requests at once) and the body limit are the ASGI wrapper's (:mod:`notifyq.web.admission`)
and Quart's ``MAX_CONTENT_LENGTH``.

Every error leaves as ``{"error": {"code", "message"}}`` with its HTTP status; nothing a
client sends can produce an HTML page or a 500 (a 500 means a bug, and is logged).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from quart import Response, g, request
from quart_schema import HttpSecurityScheme, Info, OpenAPIProvider, QuartSchema
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from notifyq import errors, logs
from notifyq.settings import Settings
from notifyq.version import __version__
from notifyq.web import api, console_api, fleet_api, page, workflows_api
from notifyq.web.bind import is_loopback
from notifyq.web.context import Context, current
from notifyq.web.replies import ApiError, error_response

log = logs.get("notifyq.web")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# On every response. The pages load their scripts, styles and data from this origin only
# (no inline script runs: the initial data is a <script type="application/json"> block,
# which is not executed), and no other site may frame them (their cancel and retry buttons
# would be clickjacking targets).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _hostname(host: str) -> str:
    """The host of a Host header value, without the port: "[::1]:80" -> "::1"."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _snake(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").replace("'", "").split())


# Responses that are not JSON models, added to the generated document.
TEXT_RESPONSES = {
    "/metrics": ("text/plain", "Prometheus text exposition format"),
    "/events": ("text/event-stream", "Server-sent events; the stream stays open"),
}


# JSON downloads (any JSON value), added to the generated document too.
JSON_DOWNLOADS = {
    "/tasks/{task_id}/payload": "The task's payload, whole (Content-Disposition: attachment)",
    "/tasks/{task_id}/result": "The task's result, whole; null when it has none",
}


class Document(OpenAPIProvider):
    def schema(self) -> dict[str, Any]:
        spec = super().schema()
        for methods in spec["paths"].values():
            for operation in methods.values():
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True
        downloads = {p: ("application/json", d) for p, d in JSON_DOWNLOADS.items()}
        for path, (media_type, description) in (TEXT_RESPONSES | downloads).items():
            operation = spec["paths"][path]["get"]
            others = {str(k): v for k, v in operation["responses"].items() if str(k) != "200"}
            operation["responses"] = {
                "200": {
                    "description": description,
                    "content": {
                        media_type: {"schema": {} if path in downloads else {"type": "string"}}
                    },
                },
                **others,
            }
        return spec


def create_app(ctx: Context) -> QuartTrio:
    package = resources.files("notifyq.web")
    app = QuartTrio(
        "notifyq.web",
        static_folder=str(package / "static"),
        static_url_path="/static",
        template_folder=str(package / "templates"),
    )
    app.config["MAX_CONTENT_LENGTH"] = ctx.settings.http_body_limit
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["notifyq"] = ctx
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info=Info(
            title="notifyq",
            version=__version__,
            description="A PostgreSQL task queue woken by NOTIFY. Mutating requests need "
            "`Authorization: Bearer <API_TOKEN>` when the server has a token.",
        ),
        security_schemes={"bearer": HttpSecurityScheme(scheme="bearer")},
        openapi_provider_class=Document,
    )
    app.register_blueprint(console_api.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(fleet_api.blueprint)
    app.register_blueprint(workflows_api.blueprint)
    app.register_blueprint(page.blueprint)
    for guard in REQUEST_GUARDS:  # in this order; the first to answer ends the request
        app.before_request(guard)
    app.after_request(add_security_headers)
    for error, handler in ERROR_HANDLERS:
        app.register_error_handler(error, handler)
    return app


# --- request guards: each returns a response to refuse the request, or None ---------------


def _guards_loopback(settings: Settings) -> bool:
    """Without a token, a loopback server trusts whoever can reach loopback. Two ways a web
    page in the user's browser could reach it anyway are refused: a cross-site change (its
    Origin names another site) and DNS rebinding (a Host that is not loopback)."""
    return not settings.tokens() and is_loopback(settings.http_host)


async def refuse_foreign_host() -> Response | None:
    """DNS rebinding: a loopback server without a token answers only to a loopback Host."""
    if _guards_loopback(current().settings) and not is_loopback(_hostname(request.host)):
        return error_response(
            403, "forbidden_host", "this server answers only to a loopback Host header"
        )
    return None


async def refuse_cross_origin_changes() -> Response | None:
    """A change whose Origin names another site than the Host it was sent to."""
    origin = request.headers.get("Origin")
    if (
        request.method not in SAFE_METHODS
        and origin is not None
        and urlsplit(origin).netloc.lower() != request.host.lower()
    ):
        return error_response(403, "cross_origin", "cross-origin requests may not change tasks")
    return None


async def require_token() -> Response | None:
    """With API_TOKEN (or API_TOKENS) set, a change needs ``Authorization: Bearer <token>``;
    the token's name (``api`` for API_TOKEN) is the actor its actions' events name."""
    tokens = current().settings.tokens()
    if not tokens or request.method in SAFE_METHODS:
        return None
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    offered = value.strip().encode()
    # Constant time, so the comparison does not reveal how much of a guess matched; every
    # token is compared, so the time does not say which one matched either.
    matched = [
        name for name, token in tokens.items() if hmac.compare_digest(offered, token.encode())
    ]
    if scheme.lower() == "bearer" and matched:
        g.notifyq_actor = matched[0]
        return None
    return error_response(
        401,
        "unauthorized",
        "this server needs Authorization: Bearer <API_TOKEN> for changes",
        headers={"WWW-Authenticate": 'Bearer realm="notifyq"'},
    )


async def refuse_changes_when_read_only() -> Response | None:
    """HTTP_READ_ONLY: the server shows, and changes nothing (every action is a 403)."""
    if current().settings.http_read_only and request.method not in SAFE_METHODS:
        return error_response(
            403, "read_only", "this server is read-only (HTTP_READ_ONLY); it changes nothing"
        )
    return None


REQUEST_GUARDS: tuple[Callable[[], Awaitable[Response | None]], ...] = (
    refuse_foreign_host,
    refuse_cross_origin_changes,
    require_token,
    refuse_changes_when_read_only,
)


async def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# --- error handlers: every error leaves as JSON ---------------------------------------------


async def api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def task_not_found(exc: errors.TaskNotFound) -> Response:
    return error_response(404, "task_not_found", str(exc))


async def invalid_transition(exc: errors.InvalidTransition) -> Response:
    return error_response(409, "invalid_transition", str(exc))


async def database_unavailable(exc: errors.DatabaseUnavailable) -> Response:
    return error_response(503, "database_unavailable", str(exc), headers={"Retry-After": "1"})


async def http_error(exc: HTTPException) -> Response:
    """Quart's and Werkzeug's own errors (no route, wrong method, body over the limit)."""
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    message = {
        404: "no such endpoint",
        405: f"{request.method} is not allowed here",
        413: f"request body over the limit of {current().settings.http_body_limit} bytes",
    }.get(status, exc.description or exc.name)
    return error_response(status, _snake(exc.name), message, headers=headers)


async def crash(exc: Exception) -> Response:
    """A bug: logged with its traceback, answered without it."""
    log.error("http.error", path=request.path, method=request.method, exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


ERROR_HANDLERS: tuple[tuple[type[Exception], Callable[[Any], Awaitable[Response]]], ...] = (
    (ApiError, api_error),
    (errors.TaskNotFound, task_not_found),
    (errors.InvalidTransition, invalid_transition),
    (errors.DatabaseUnavailable, database_unavailable),
    (HTTPException, http_error),
    (Exception, crash),
)
