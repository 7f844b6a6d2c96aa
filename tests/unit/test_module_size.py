"""Modules stay readable: none over 400 lines (split by what they do instead)."""

from __future__ import annotations

from pathlib import Path

import notifyq

LIMIT = 400


def test_no_module_is_over_400_lines() -> None:
    root = Path(notifyq.__file__).parent
    long = {
        str(p.relative_to(root)): n
        for p in sorted(root.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert long == {}
