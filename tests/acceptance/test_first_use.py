"""The installed `notifyq` program (its console script, not `python -m notifyq`) as a new
user meets it: an app module in the working directory, a wrong database URL, a handler
module that fails to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifyq import logs, settings
from tests import pg
from tests.acceptance.proc import scalar, until

# The console script pip installed beside this interpreter (what `notifyq ...` runs).
NOTIFYQ = str(Path(sys.executable).with_name("notifyq"))

MYAPP = """
import notifyq

app = notifyq.App()


@app.handler("shout")
async def shout(task: notifyq.Task) -> str:
    return task.payload.upper()
"""


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    return {**env, "DATABASE_URL": url, "LOG_LEVEL": "warning", "HTTP_PORT": "0", **extra}


def _run(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOTIFYQ, *args], env=_env(url), cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_console_script_serves_an_app_module_of_the_working_directory(
    database_url: str, tmp_path: Path
) -> None:
    # Before: "invalid NOTIFYQ_APP='myapp:app': cannot import myapp: No module named
    # 'myapp'", as the console script does not put the working directory on sys.path.
    (tmp_path / "myapp.py").write_text(MYAPP)
    task_id = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('shout', '\"hi\"') RETURNING id",
    )
    proc = subprocess.Popen(
        [NOTIFYQ, "serve", "--no-http", "--app", "myapp:app"],
        env=_env(database_url),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until(
            lambda: (
                proc.poll() is not None
                or scalar(database_url, f"SELECT status FROM notifyq.tasks WHERE id = {task_id}")
                == "done"
            ),
            timeout=60,
        )
        assert proc.poll() is None, proc.communicate()[1]
        result = scalar(database_url, f"SELECT result FROM notifyq.tasks WHERE id = {task_id}")
        assert result == '"HI"'
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


@pytest.mark.parametrize(
    "args",
    [["status"], ["migrate"], ["enqueue", "echo", "1"], ["worker"], ["serve", "--no-http"]],
    ids=lambda args: args[0],
)
def test_a_refused_connection_is_one_line_and_exit_2(
    server_url: str, tmp_path: Path, args: list[str]
) -> None:
    # Before: a 77-101-line traceback (asyncpg's InvalidCatalogNameError /
    # InvalidAuthorizationSpecificationError; a wrong password is a subclass of the latter).
    no_database = pg.with_database(server_url, "no_such_database")
    no_role = server_url.replace("postgresql://postgres", "postgresql://nobody", 1)
    assert no_role != server_url
    for url, reason in [
        (no_database, 'database "no_such_database" does not exist'),
        (no_role, 'role "nobody" does not exist'),
    ]:
        done = _run(url, tmp_path, *args)
        assert (done.returncode, done.stderr) == (
            2,
            f"notifyq: cannot connect to {logs.redact(url)}: {reason}\n",
        ), done


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            "import os\nKEY = os.environ['NO_SUCH_KEY_X']\n",
            "KeyError: 'NO_SUCH_KEY_X' (badapp.py, line 2)",
        ),
        (
            "import notifyq\napp = notifyq.App(\n",
            "SyntaxError: '(' was never closed (badapp.py, line 2)",
        ),
    ],
    ids=["KeyError", "SyntaxError"],
)
def test_an_app_module_that_fails_to_import_is_one_line(
    database_url: str, tmp_path: Path, source: str, error: str
) -> None:
    (tmp_path / "badapp.py").write_text(source)
    done = _run(database_url, tmp_path, "worker", "--app", "badapp:app")
    assert (done.returncode, done.stderr) == (
        2,
        f"notifyq: invalid NOTIFYQ_APP='badapp:app': importing badapp raised {error}\n",
    ), done
