"""Building responses: JSON bodies and the one error shape every failure uses."""

from __future__ import annotations

import json
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


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = Response(model.model_dump_json(), status=status, content_type="application/json")
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
    response = Response(
        json.dumps({"error": body}), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
