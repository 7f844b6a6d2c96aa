"""Reading a request body: JSON only, validated by a pydantic model into a clear 4xx."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import request

from notifyq.web.replies import ApiError

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def body(model: type[M]) -> M:
    if not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.get_data(as_text=False)  # over MAX_CONTENT_LENGTH: 413
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
        raise ApiError(422, "validation_failed", summary, details=details) from None
