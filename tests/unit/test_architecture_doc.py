"""The README's architecture section names every module of the package, so that a reader
who looks for where a change belongs finds each file there (a new module is added to it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "notifyq"


def _architecture_tree() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"```\n(notifyq/\n.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the architecture section has one tree of notifyq/"
    return blocks[0]


def _names_in_tree() -> set[str]:
    return set(re.findall(r"[A-Za-z_][\w]*(?:\.py|\.sql|/)", _architecture_tree()))


def _modules(folder: Path) -> list[str]:
    return sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in folder.iterdir()
        if (p.suffix in {".py", ".sql"} or (p.is_dir() and (p / "__init__.py").exists()))
        and p.name not in {"__init__.py", "__main__.py"}
    )


def test_every_top_level_module_and_package_is_in_the_tree() -> None:
    names = _names_in_tree()
    missing = [m for m in _modules(PACKAGE) if m not in names]
    assert missing == [], f"README's architecture tree does not name {missing}"


def test_every_engine_and_serving_module_is_in_the_tree() -> None:
    # The stages and the lifecycle are listed file by file (the other packages in a line).
    names = _names_in_tree()
    for package in ("engine", "serving"):
        missing = [m for m in _modules(PACKAGE / package) if m not in names]
        assert missing == [], f"README's architecture tree does not name {package}/{missing}"


def test_the_tree_names_no_module_that_is_gone() -> None:
    tree = _architecture_tree()
    existing = {p.name for p in PACKAGE.rglob("*") if p.suffix in {".py", ".sql"}}
    named = set(re.findall(r"\b(\w+\.(?:py|sql))\b", tree)) - {"schema.sql", "bench.sql"}
    assert named <= existing, f"README names modules that do not exist: {named - existing}"
