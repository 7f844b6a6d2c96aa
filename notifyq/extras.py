"""The optional extras (``pip install "notifyq[otel]"``, ...): whether one is installed,
without importing it, and the one line that says what to install when a feature needs it.

``importlib.util.find_spec("opentelemetry.sdk")`` imports the parent package first and
raises when it is missing; :func:`installed` answers False instead, so that a bare install
never fails on a module it does not have (tests/acceptance/test_wheel.py).
"""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """Whether ``module`` (a dotted name) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def missing(module: str, extra: str, feature: str) -> str | None:
    """None if ``module`` is installed, else the line telling the user what to install."""
    if installed(module):
        return None
    return f'{feature} needs {module.split(".")[0]}: pip install "notifyq[{extra}]"'
