"""The project's text names only what a reader of the repository can open.

A comment that points at a planning note the repository lacks, or at a tracker item by its
number, sends a newcomer to something the repository does not have: the rule has to be stated
where it is used, and a bench line states its goal, not the number of the item that set it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("notifyq", "tests", "docs", "migrations", ".ci", "deploy")
FILES = ("README.md", "Makefile", "pyproject.toml", "compose.yaml", "Dockerfile", "schema.sql")
SUFFIXES = {".py", ".sql", ".md", ".toml", ".yaml", ".yml", ".js", ".html", ".css", ""}

# An issue, pull request or planning note by number: the word, an optional #, then digits.
ISSUE = re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE)
# Markdown files that a command writes (`bench all --out DIR` writes DIR/bench.md): named in
# the text, never in the tree.
WRITTEN = {"bench.md"}
MARKDOWN = re.compile(r"(?<![\w-])([\w-]+\.md)\b")


def text_files() -> list[Path]:
    found = [ROOT / name for name in FILES if (ROOT / name).is_file()]
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in SUFFIXES:
                continue
            if path.resolve() == Path(__file__).resolve() or "node_modules" in path.parts:
                continue
            found.append(path)
    return found


def test_no_issue_numbers() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in text_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ISSUE.search(line)
    ]
    assert hits == [], "state the rule or the goal instead of an issue number:\n" + "\n".join(hits)


def test_named_markdown_files_exist() -> None:
    present = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts} | WRITTEN
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {name}"
        for path in text_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for name in MARKDOWN.findall(line)
        if name not in present
    ]
    assert hits == [], "these files are not in the repository:\n" + "\n".join(hits)


def test_the_scan_sees_the_tree() -> None:
    """Guards the two tests above against passing on an empty scan."""
    names = {p.relative_to(ROOT).as_posix() for p in text_files()}
    assert {"README.md", "notifyq/engine/__init__.py", "notifyq/queries.sql"} <= names
