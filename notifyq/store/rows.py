"""What the store hands back and stores: display rows, previews, storable text.

The words the rows hold (statuses, verdicts) are :mod:`notifyq.vocabulary`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_ERROR_CHARS = 4000
PREVIEW_CHARS = 4096
"""Lists show a payload or result whose JSON text is longer than this as a preview."""

Row = Mapping[str, Any]
"""A display row (tasks, workers, history) as the HTTP models and the CLI read it."""


def clean_text(text: str) -> str:
    """Text that PostgreSQL accepts (no NUL), cut to a readable length."""
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 15] + "… (truncated)"
    return text
