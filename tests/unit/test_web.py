"""HTTP-side rules that need no database: the bind rule, settings, the event encoding."""

from __future__ import annotations

import json

import pytest

from notifyq import errors
from notifyq.settings import load
from notifyq.web.bind import check_bind, is_loopback
from notifyq.web.live import encode
from notifyq.web.server import hypercorn_config


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_bind_needs_a_token_or_the_insecure_flag_off_loopback() -> None:
    check_bind(load(http_host="127.0.0.1"))
    with pytest.raises(
        errors.ConfigError, match=r"^refusing to serve HTTP on 0\.0\.0\.0 without API_TOKEN"
    ):
        check_bind(load(http_host="0.0.0.0"))
    check_bind(load(http_host="0.0.0.0", api_token="x" * 16))
    check_bind(load(http_host="0.0.0.0", insecure_http=True))


def test_ipv6_hosts_are_bracketed_for_hypercorn() -> None:
    assert hypercorn_config(load(http_host="::1", http_port=9000)).bind == ["[::1]:9000"]
    assert hypercorn_config(load(http_host="127.0.0.1", http_port=0)).bind == ["127.0.0.1:0"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"http_port": 70000}, "invalid HTTP_PORT=70000: expected a TCP port from 0 to 65535"),
        ({"http_host": "a b"}, "invalid HTTP_HOST='a b': expected an IP address or host name"),
        ({"http_body_limit": 10}, "invalid HTTP_BODY_LIMIT=10: expected a size in bytes"),
        ({"api_token": "has space in it!!!"}, "invalid API_TOKEN: expected at least 16 printable"),
    ],
)
def test_bad_http_settings_name_the_variable(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        load(**overrides)
    assert str(raised.value).startswith(message)
    assert "has space" not in str(raised.value)  # a token is never echoed


def test_blank_token_means_no_token() -> None:
    assert load(api_token="").api_token is None


def test_events_are_encoded_as_server_sent_events() -> None:
    raw = encode("task", {"id": 1, "status": "done"}).decode()
    assert raw.startswith("event: task\ndata: ") and raw.endswith("\n\n")
    assert json.loads(raw.split("data: ", 1)[1]) == {"id": 1, "status": "done"}
