"""The Django example project's tests (examples/django/test_example.py), run in one
subprocess on the Python 3.12+ virtualenv of `make django-venv` (Django 6 needs 3.12; this
suite runs on 3.11), against an empty database of the suite's PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django"
PYTHON = ROOT / ".venv-django" / "bin" / "python"


@pytest.mark.slow  # one pytest run on another Python: migrate, a worker process, the admin
@pytest.mark.timeout(330)  # the subprocess's own limit is 300 s: a loaded machine needs it
def test_the_django_example_project(empty_database_url: str) -> None:
    if not PYTHON.exists():
        pytest.skip(
            f"Django 6 needs Python 3.12+: no {PYTHON.relative_to(ROOT)} (make django-venv)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOTIFYQ_"))}
    env.pop("VIRTUAL_ENV", None)
    ran = subprocess.run(
        [str(PYTHON), "-m", "pytest", "-q", "test_example.py"],
        cwd=EXAMPLE,
        env={**env, "DATABASE_URL": empty_database_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-3000:]
