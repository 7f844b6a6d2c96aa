"""Building responses: JSON bodies and the one error shape every failure uses."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from quart import Response


class ApiError(Exception):
    """Raised by a handler; leaves as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def plain(value: Any) -> Any:
    """json.dumps' fallback for what a response model holds."""
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode(model: BaseModel) -> str:
    """The model as JSON. Not pydantic's serializer: a payload or result written by SQL may
    be nested deeper than pydantic walks (about 255 levels); json.dumps goes to Python's
    recursion limit, and past that the value is replaced by a note, never a 500."""
    try:
        return json.dumps(model, default=plain)
    except RecursionError:
        return json.dumps(model, default=_shallow_plain)


def _shallow_plain(value: Any) -> Any:
    fields = plain(value)
    if isinstance(fields, dict):
        for key in ("payload", "result"):
            if key in fields:
                fields[key] = {"notifyq": "nested too deeply to show; read it with SQL"}
    return fields


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = Response(encode(model), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = Response(json.dumps({"error": body}), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
