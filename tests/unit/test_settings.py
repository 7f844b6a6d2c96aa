"""Settings: defaults, environment, .env, flags, durations and the exact error messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from notifyq import settings
from notifyq.durations import parse_duration
from notifyq.errors import ConfigError
from notifyq.settings import load

DURATION = "a duration: seconds, or a number with ms, s, m, h or d (e.g. 30, 2.5s, 7d)"


ENV_NAMES = settings.ENV_NAMES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the developer's environment or a stray .env reaches these tests."""
    for key in list(os.environ):
        if key.upper() in ENV_NAMES:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**overrides)
    return str(caught.value)


# --- defaults, sources, precedence ----------------------------------------------------


def test_known_environment_names_are_covered() -> None:
    # The isolation fixture relies on this list; it must hold the documented names.
    assert {
        "DATABASE_URL",
        "WORKER_COUNT",
        "FETCH_LIMIT",
        "FETCH_INTERVAL",
        "QUEUES",
        "SHUTDOWN_TIMEOUT",
        "LEASE",
        "RETRY_BASE",
        "RETRY_MAX",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "NOTIFYQ_DATA_DIR",
        "NOTIFYQ_APP",
        "DEMO_MIN_DELAY",
        "DEMO_MAX_DELAY",
    } <= ENV_NAMES


def test_defaults_are_the_documented_ones() -> None:
    s = load()
    assert s.worker_count == 5
    assert s.fetch_limit == 500
    assert s.prefetch is None  # auto
    assert s.fetch_interval_s == 5.0
    assert s.queues == ("default",)
    assert s.shutdown_timeout_s == 30.0
    assert s.lease_s == 30.0
    assert s.retry_base_s == 1.0
    assert s.retry_max_s == 3600.0
    assert s.log_level == "info"
    assert s.log_format == "console"
    assert s.data_dir == Path(".notifyq")
    assert s.database_url is None
    assert s.listen_database_url is None
    assert s.listen_url is None
    assert s.task_timeout_s is None
    assert s.retention_s is None
    assert s.app is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DATABASE_URL": "postgresql://u:pw@db.example:5432/app",
        "LISTEN_DATABASE_URL": "postgres://listener@db.example/app",
        "NOTIFYQ_DATA_DIR": "/var/lib/nq",
        "NOTIFYQ_APP": "myapp.tasks:app",
        "WORKER_COUNT": "12",
        "FETCH_LIMIT": "50",
        "FETCH_INTERVAL": "2.5s",
        "QUEUES": "high,low",
        "SHUTDOWN_TIMEOUT": "1m",
        "TASK_TIMEOUT": "90",
        "LEASE": "45s",
        "RETRY_BASE": "500ms",
        "RETRY_MAX": "1h",
        "RETENTION": "7d",
        "POOL_SIZE": "4",
        "DEMO_MIN_DELAY": "0",
        "DEMO_MAX_DELAY": "2",
        "DEMO_FAILURE_RATE": "0.5",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = load()
    assert s.database_url == "postgresql://u:pw@db.example:5432/app"
    assert s.listen_database_url == "postgres://listener@db.example/app"
    assert s.listen_url == "postgres://listener@db.example/app"
    assert s.data_dir == Path("/var/lib/nq")
    assert s.app == "myapp.tasks:app"
    assert s.worker_count == 12
    assert s.fetch_limit == 50
    assert s.fetch_interval_s == 2.5
    assert s.queues == ("high", "low")
    assert s.shutdown_timeout_s == 60.0
    assert s.task_timeout_s == 90.0
    assert s.lease_s == 45.0
    assert s.retry_base_s == 0.5
    assert s.retry_max_s == 3600.0
    assert s.retention_s == 7 * 86400.0
    assert s.pool_size == 4
    assert s.demo_min_delay_s == 0.0
    assert s.demo_max_delay_s == 2.0
    assert s.demo_failure_rate == 0.5
    assert s.log_level == "debug"
    assert s.log_format == "json"


def test_listen_url_falls_back_to_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://main@h/db")
    assert load().listen_url == "postgresql://main@h/db"


def test_blank_urls_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("TASK_TIMEOUT", "")
    s = load()
    assert s.database_url is None
    assert s.task_timeout_s is None


def test_dotenv_file_in_the_working_directory_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "WORKER_COUNT=7\nQUEUES=mail,sms\nLEASE=2m\nDATABASE_URL=postgresql://x@h/y\n",
        encoding="utf-8",
    )
    s = load()
    assert s.worker_count == 7
    assert s.queues == ("mail", "sms")
    assert s.lease_s == 120.0
    assert s.database_url == "postgresql://x@h/y"


def test_environment_beats_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("WORKER_COUNT=7\nFETCH_LIMIT=70\n", encoding="utf-8")
    monkeypatch.setenv("WORKER_COUNT", "3")
    s = load()
    assert s.worker_count == 3
    assert s.fetch_limit == 70


def test_dotenv_elsewhere_is_not_read(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = clean_env / "elsewhere"
    sub.mkdir()
    (clean_env / ".env").write_text("WORKER_COUNT=7\n", encoding="utf-8")
    monkeypatch.chdir(sub)
    assert load().worker_count == 5


def test_flags_beat_environment_and_dotenv(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("FETCH_LIMIT=70\nQUEUES=fromfile\n", encoding="utf-8")
    monkeypatch.setenv("WORKER_COUNT", "3")
    monkeypatch.setenv("FETCH_INTERVAL", "9")
    s = load(worker_count=8, fetch_limit=9, fetch_interval_s="250ms", queues="a,b")
    assert s.worker_count == 8
    assert s.fetch_limit == 9
    assert s.fetch_interval_s == 0.25
    assert s.queues == ("a", "b")


def test_none_flags_mean_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COUNT", "3")
    s = load(worker_count=None, log_level=None, database_url=None)
    assert s.worker_count == 3
    assert s.log_level == "info"
    assert s.database_url is None


def test_settings_are_frozen() -> None:
    s = load()
    with pytest.raises(Exception, match="frozen"):
        s.worker_count = 2


# --- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        (30, 30.0),
        (2.5, 2.5),
        ("2.5s", 2.5),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        (" 10 s ", 10.0),
        ("0", 0.0),
    ],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "soon",
        "-1",
        "5 minutes",
        "1e3",
        "nan",
        "inf",
        "5x",
        True,
        float("nan"),
        float("inf"),
        -2,
    ],
)
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(bad)
    assert str(caught.value) == DURATION


@pytest.mark.parametrize(
    ("env", "text", "field", "seconds"),
    [
        ("FETCH_INTERVAL", "30", "fetch_interval_s", 30.0),
        ("SHUTDOWN_TIMEOUT", "2.5s", "shutdown_timeout_s", 2.5),
        ("LEASE", "5m", "lease_s", 300.0),
        ("RETRY_BASE", "500ms", "retry_base_s", 0.5),
        ("RETENTION", "7d", "retention_s", 604800.0),
    ],
)
def test_duration_settings_accept_every_form(
    monkeypatch: pytest.MonkeyPatch, env: str, text: str, field: str, seconds: float
) -> None:
    monkeypatch.setenv(env, text)
    assert getattr(load(), field) == seconds


# --- errors: the exact one-line messages ------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("WORKER_COUNT", "abc", "invalid WORKER_COUNT='abc': expected an integer from 1 to 10000"),
        ("WORKER_COUNT", "0", "invalid WORKER_COUNT='0': expected an integer from 1 to 10000"),
        (
            "WORKER_COUNT",
            "10001",
            "invalid WORKER_COUNT='10001': expected an integer from 1 to 10000",
        ),
        ("WORKER_COUNT", "2.5", "invalid WORKER_COUNT='2.5': expected an integer from 1 to 10000"),
        ("FETCH_LIMIT", "x", "invalid FETCH_LIMIT='x': expected an integer from 1 to 10000"),
        ("FETCH_INTERVAL", "soon", f"invalid FETCH_INTERVAL='soon': expected {DURATION}, above 0"),
        ("FETCH_INTERVAL", "-1", f"invalid FETCH_INTERVAL='-1': expected {DURATION}, above 0"),
        # A parsed duration that is out of range is shown as the parsed number of seconds.
        ("FETCH_INTERVAL", "0", f"invalid FETCH_INTERVAL=0.0: expected {DURATION}, above 0"),
        ("QUEUES", "a,,b", "invalid QUEUES='a,,b': expected a comma-separated list of queue names"),
        ("QUEUES", " , ", "invalid QUEUES=' , ': expected a comma-separated list of queue names"),
        (
            "QUEUES",
            "q" * 129,
            f"invalid QUEUES='{'q' * 129}': expected a comma-separated list of queue names",
        ),
        ("SHUTDOWN_TIMEOUT", "abc", f"invalid SHUTDOWN_TIMEOUT='abc': expected {DURATION}"),
        (
            "TASK_TIMEOUT",
            "0",
            f"invalid TASK_TIMEOUT=0.0: expected {DURATION}, above 0 (unset: no limit)",
        ),
        ("LEASE", "500ms", f"invalid LEASE=0.5: expected {DURATION}, at least 1s"),
        ("LEASE", "forever", f"invalid LEASE='forever': expected {DURATION}, at least 1s"),
        ("RETRY_BASE", "-1", f"invalid RETRY_BASE='-1': expected {DURATION}"),
        ("RETRY_MAX", "nan", f"invalid RETRY_MAX='nan': expected {DURATION}"),
        (
            "RETENTION",
            "0s",
            f"invalid RETENTION=0.0: expected {DURATION}, above 0 (unset: keep ended tasks)",
        ),
        ("POOL_SIZE", "1", "invalid POOL_SIZE='1': expected an integer from 2 to 1000"),
        ("DEMO_FAILURE_RATE", "2", "invalid DEMO_FAILURE_RATE='2': expected a number from 0 to 1"),
        ("DEMO_MIN_DELAY", "later", f"invalid DEMO_MIN_DELAY='later': expected {DURATION}"),
        (
            "LOG_LEVEL",
            "verbose",
            "invalid LOG_LEVEL='verbose': expected one of debug, info, warning, error",
        ),
        ("LOG_FORMAT", "xml", "invalid LOG_FORMAT='xml': expected console or json"),
        (
            "NOTIFYQ_APP",
            "not-a-spec",
            "invalid NOTIFYQ_APP='not-a-spec': expected module:attribute naming a notifyq.App",
        ),
        (
            "DATABASE_URL",
            "mysql://root@h/db",
            "invalid DATABASE_URL: expected a postgresql:// URL (unset: the embedded PostgreSQL)",
        ),
        (
            "LISTEN_DATABASE_URL",
            "http://h/db",
            "invalid LISTEN_DATABASE_URL: expected a postgresql:// URL for the LISTEN connection "
            "(unset: DATABASE_URL)",
        ),
    ],
)
def test_bad_environment_value_gives_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    assert config_error() == message


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"worker_count": 0}, "invalid WORKER_COUNT=0: expected an integer from 1 to 10000"),
        ({"fetch_limit": 10_001}, "invalid FETCH_LIMIT=10001: expected an integer from 1 to 10000"),
        (
            {"fetch_interval_s": "soon"},
            f"invalid FETCH_INTERVAL='soon': expected {DURATION}, above 0",
        ),
        ({"queues": ""}, "invalid QUEUES='': expected a comma-separated list of queue names"),
        (
            {"log_level": "loud"},
            "invalid LOG_LEVEL='loud': expected one of debug, info, warning, error",
        ),
        (
            {"app": "nocolon"},
            "invalid NOTIFYQ_APP='nocolon': expected module:attribute naming a notifyq.App",
        ),
        (
            {"data_dir": 5},
            "invalid NOTIFYQ_DATA_DIR=5: expected a directory for the embedded PostgreSQL's data",
        ),
    ],
)
def test_bad_flag_gives_the_same_message_as_the_environment(
    flags: dict[str, object], message: str
) -> None:
    assert config_error(**flags) == message


def test_bad_flag_beats_good_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETCH_LIMIT", "10")
    assert config_error(fetch_limit=0) == (
        "invalid FETCH_LIMIT=0: expected an integer from 1 to 10000"
    )


def test_good_flag_hides_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COUNT", "many")
    assert load(worker_count=4).worker_count == 4


def test_bad_value_in_dotenv_names_the_variable(clean_env: Path) -> None:
    (clean_env / ".env").write_text("WORKER_COUNT=lots\n", encoding="utf-8")
    assert config_error() == "invalid WORKER_COUNT='lots': expected an integer from 1 to 10000"


def test_config_error_is_a_notifyq_error() -> None:
    from notifyq.errors import NotifyqError

    with pytest.raises(NotifyqError):
        load(worker_count=-1)


def test_several_bad_values_report_the_first_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database group lives in its own module but still comes first: with a bad
    DATABASE_URL, a bad WORKER_COUNT and a bad HTTP_PORT, start-up names DATABASE_URL."""
    monkeypatch.setenv("HTTP_PORT", "99999")
    monkeypatch.setenv("WORKER_COUNT", "many")
    monkeypatch.setenv("DATABASE_URL", "mysql://db.example/app")
    assert config_error().startswith("invalid DATABASE_URL")
    monkeypatch.delenv("DATABASE_URL")
    assert config_error().startswith("invalid WORKER_COUNT=")
    assert list(settings.Settings.model_fields)[:2] == ["database_url", "listen_database_url"]


# --- never echo a database URL ------------------------------------------------------------

SECRET = "hunter2-S3cret"


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://admin:{SECRET}@db.example:3306/app",
        f"postgresql//admin:{SECRET}@db.example/app",
        f"host=db.example user=admin password={SECRET}",
        f"https://admin:{SECRET}@db.example/",
    ],
)
@pytest.mark.parametrize("env", ["DATABASE_URL", "LISTEN_DATABASE_URL", "READ_DATABASE_URL"])
def test_bad_database_url_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, url: str, env: str
) -> None:
    monkeypatch.setenv(env, url)
    message = config_error()
    assert message.startswith(f"invalid {env}: expected a postgresql:// URL")
    assert SECRET not in message
    assert "admin" not in message
    assert "db.example" not in message


def test_bad_database_url_flag_is_never_echoed() -> None:
    message = config_error(database_url=f"mongodb://root:{SECRET}@h/db")
    assert message == (
        "invalid DATABASE_URL: expected a postgresql:// URL (unset: the embedded PostgreSQL)"
    )


def test_bad_database_url_in_dotenv_is_never_echoed(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"DATABASE_URL=redis://:{SECRET}@h/0\n", encoding="utf-8")
    message = config_error()
    assert SECRET not in message
    assert message.startswith("invalid DATABASE_URL: ")


def test_other_bad_setting_does_not_echo_a_good_database_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://admin:{SECRET}@h/db")
    monkeypatch.setenv("WORKER_COUNT", "none")
    message = config_error()
    assert SECRET not in message
    assert message == "invalid WORKER_COUNT='none': expected an integer from 1 to 10000"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:notaport/db",
        "postgresql://u@[::1/db",
        "postgresql://u@::1]/db",
        "postgresql://u@h:99999/db",
        "postgresql://u@h1:5432,h2:x/db",
        f"postgresql://admin:pa/{SECRET}@h/db",  # an unescaped / in the password
    ],
)
@pytest.mark.parametrize("env", ["DATABASE_URL", "LISTEN_DATABASE_URL", "READ_DATABASE_URL"])
def test_malformed_database_url_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str, env: str
) -> None:
    monkeypatch.setenv(env, url)
    message = config_error()
    assert message.startswith(f"invalid {env}: expected a postgresql:// URL")
    assert SECRET not in message


def test_malformed_database_url_flag_is_a_config_error() -> None:
    assert config_error(database_url="postgresql://u@127.0.0.1:notaport/db") == (
        "invalid DATABASE_URL: expected a postgresql:// URL (unset: the embedded PostgreSQL)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:5432/db",
        "postgres://u:p%40ss@db.example/db?sslmode=require",
        "postgresql://u@[::1]:6543/db",
        "postgresql://u@h1:5432,h2:5433/db",  # several hosts, as libpq and asyncpg take them
        "postgresql://u:p@h1:5432,h2:5432,h3/db?target_session_attrs=read-write",
        "postgresql://u@h:/db",
        "postgresql:///db?host=/run/postgresql",
    ],
)
def test_well_formed_database_urls_are_accepted(url: str) -> None:
    settings = load(database_url=url, listen_database_url=url, read_database_url=url)
    assert settings.database_url == settings.read_database_url == url


# --- queues ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "queues"),
    [
        ("default", ("default",)),
        ("a,b,c", ("a", "b", "c")),
        (" a , b ,a", ("a", "b")),
        ("b,a,b,a,c", ("b", "a", "c")),
        ("x" * 128, ("x" * 128,)),
    ],
)
def test_queues_are_split_trimmed_and_deduplicated(
    monkeypatch: pytest.MonkeyPatch, text: str, queues: tuple[str, ...]
) -> None:
    monkeypatch.setenv("QUEUES", text)
    assert load().queues == queues


def test_queues_flag_accepts_a_list() -> None:
    assert load(queues=["x", "y", "x"]).queues == ("x", "y")


# --- cross-field checks -----------------------------------------------------------------------


def test_demo_min_delay_above_max_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_MIN_DELAY", "5")
    monkeypatch.setenv("DEMO_MAX_DELAY", "1s")
    assert config_error() == "invalid DEMO_MIN_DELAY=5.0: expected at most DEMO_MAX_DELAY (1.0)"


def test_demo_min_delay_above_default_max_is_refused() -> None:
    assert config_error(demo_min_delay_s="10") == (
        "invalid DEMO_MIN_DELAY=10.0: expected at most DEMO_MAX_DELAY (4.0)"
    )


def test_demo_min_delay_equal_to_max_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_MIN_DELAY", "2")
    monkeypatch.setenv("DEMO_MAX_DELAY", "2000ms")
    s = load()
    assert (s.demo_min_delay_s, s.demo_max_delay_s) == (2.0, 2.0)


# --- the embedded server's restarts -----------------------------------------------------------


def test_embedded_restarts_default_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load().embedded_restarts == 5
    monkeypatch.setenv("EMBEDDED_RESTARTS", "0")
    assert load().embedded_restarts == 0
    monkeypatch.setenv("EMBEDDED_RESTARTS", "-1")
    assert config_error() == (
        "invalid EMBEDDED_RESTARTS='-1': expected an integer from 0 to 1000 "
        "(restarts of a stopped embedded PostgreSQL)"
    )


def test_every_setting_and_stop_signal_is_in_the_readme() -> None:
    from notifyq.serving.run import STOP_SIGNALS

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert [name for name in sorted(ENV_NAMES) if f"`{name}`" not in readme] == []
    assert [s.name for s in STOP_SIGNALS if s.name not in readme] == []


def test_prefetch_is_auto_or_a_count() -> None:
    assert load(prefetch="auto").prefetch is None
    assert load(prefetch="0").prefetch == 0
    assert load(prefetch=200).prefetch == 200
