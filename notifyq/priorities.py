"""Named priorities, the one mapping the CLI, the HTTP API and Python producers share.

Higher runs first. The names are spaced out so that integers can still go between them
(a task at 5 runs after ``high`` and before ``normal``); integers keep working everywhere.

    low = -10, normal = 0 (the column's default), high = 10, urgent = 20
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

NAMED: Final = MappingProxyType({"low": -10, "normal": 0, "high": 10, "urgent": 20})
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
HELP: Final = "an integer (higher runs first) or one of " + ", ".join(
    f"{name} ({value})" for name, value in NAMED.items()
)


class PriorityError(ValueError):
    """A value that is no priority; ``expected`` says what is accepted."""

    def __init__(self, value: object, expected: str) -> None:
        super().__init__(f"invalid priority {value!r}: expected {expected}")
        self.expected = expected


def parse(value: object) -> int:
    """An integer priority from an int, a name, or a string holding an integer.

    Raises :class:`PriorityError` (a ValueError) naming the bad value and what is accepted.
    """
    if isinstance(value, bool):  # True is an int to Python, never a priority
        raise PriorityError(value, HELP)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        # JSON has one number type: 5.0 is an integer to JSON Schema (and to the API's
        # document), so it is one here too.
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in NAMED:
            return NAMED[text]
        try:
            number = int(text)
        except ValueError:
            raise PriorityError(value, HELP) from None
    else:
        raise PriorityError(value, HELP)
    if not INT32_MIN <= number <= INT32_MAX:
        raise PriorityError(value, f"an integer from {INT32_MIN} to {INT32_MAX}")
    return number
