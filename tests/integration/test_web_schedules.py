"""Unique tasks and schedules over HTTP, and an App's schedule firing in a running process."""

from __future__ import annotations

from typing import Any

import pytest

from notifyq import db
from notifyq.app import App
from notifyq.errors import ConfigError
from notifyq.schedules import ScheduleError
from notifyq.store import PREVIEW_CHARS
from tests.helpers import Web, eventually, running_web
from tests.integration.test_web_api import error_of, post


@pytest.fixture
async def idle_web(database: db.Database) -> Any:
    async with running_web(database, workers=False) as web:
        yield web


def metric(text: str, name: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


async def test_post_task_with_a_unique_key_answers_the_live_task(idle_web: Web) -> None:
    client = idle_web.test_client()
    body = {"kind": "noop", "unique_key": "invoice:7"}
    first = await post(client, "/tasks", body)
    assert first.status_code == 201
    created = await first.get_json()
    assert (created["duplicate"], created["unique_key"]) == (False, "invoice:7")
    second = await post(client, "/tasks", body | {"priority": 9})
    assert second.status_code == 200
    again = await second.get_json()
    assert (again["id"], again["duplicate"], again["priority"]) == (created["id"], True, 0)
    assert second.headers["Location"] == f"/tasks/{created['id']}"
    other_queue = await post(client, "/tasks", body | {"queue": "other"})
    assert other_queue.status_code == 201
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert metric(text, "notifyq_duplicates_skipped_total") == 1
    await error_of(
        await post(client, "/tasks", {"kind": "noop", "unique_key": ""}), 422, "validation_failed"
    )


async def test_schedules_over_http(idle_web: Web) -> None:
    client = idle_web.test_client()
    bad_cron = await error_of(
        await post(client, "/schedules", {"name": "s", "cron": "61 * * * *", "kind": "noop"}),
        422,
        "validation_failed",
    )
    assert bad_cron["message"] == "invalid cron expression '61 * * * *': bad minute field"
    bad_zone = await error_of(
        await post(
            client,
            "/schedules",
            {"name": "s", "cron": "0 9 * * *", "tz": "Mars/Olympus", "kind": "noop"},
        ),
        422,
        "validation_failed",
    )
    assert bad_zone["message"].startswith("unknown time zone 'Mars/Olympus'")
    await error_of(
        await post(client, "/schedules", {"name": "s", "kind": "noop"}), 422, "validation_failed"
    )
    added = await post(
        client,
        "/schedules",
        {
            "name": "s",
            "cron": "0 9 * * *",
            "tz": "Europe/Berlin",
            "kind": "reverse",
            "payload": "hi",
        },
    )
    assert added.status_code == 200
    answer = await added.get_json()
    assert answer["change"] == "added" and answer["schedule"]["next_run_at"] is not None
    bare = await post(client, "/schedules", {"name": "bare", "every": "1m", "kind": "noop"})
    assert bare.status_code == 200 and (await bare.get_json())["schedule"]["payload"] == {}
    assert (await client.delete("/schedules/bare")).status_code == 200
    listed = await (await client.get("/schedules")).get_json()
    assert [s["name"] for s in listed["schedules"]] == ["s"]
    paused = await (await post(client, "/schedules/s/pause")).get_json()
    assert paused["paused"] is True
    page = await (await client.get("/")).get_data(as_text=True)
    assert "cron 0 9 * * * (Europe/Berlin)" in page and "(paused)" in page
    assert (await client.delete("/schedules/s")).status_code == 200
    await error_of(await client.delete("/schedules/s"), 404, "not_found")
    await error_of(await post(client, "/schedules/s/resume"), 404, "not_found")


async def test_an_apps_schedule_fires_in_a_running_process(database: db.Database) -> None:
    app = App()
    app.schedule("heartbeat", every="1s", kind="noop", payload={"from": "app"})
    async with running_web(database, app=app) as web:
        client = web.test_client()

        async def fired() -> Any:
            return await database.fetchval(
                "SELECT id FROM notifyq.tasks WHERE schedule_name = 'heartbeat' LIMIT 1"
            )

        task_id = await eventually(fired, timeout=10)
        history = await (await client.get(f"/tasks/{task_id}/history")).get_json()
        queued = history["events"][0]
        assert queued["event"] == "queued"
        assert queued["detail"].startswith("schedule heartbeat, tick ")
        task = await (await client.get(f"/tasks/{task_id}")).get_json()
        assert task["payload"] == {"from": "app"} and task["schedule_tick"] is not None
        text = await (await client.get("/metrics")).get_data(as_text=True)
        assert metric(text, "notifyq_schedule_ticks_fired_total") >= 1
        assert "notifyq_schedule_ticks_missed_total 0.0" in text
        page = await (await client.get("/")).get_data(as_text=True)
        assert "heartbeat" in page and "every 1 s" in page


def test_an_app_refuses_a_bad_schedule_where_it_is_declared() -> None:
    app = App()
    with pytest.raises(ScheduleError, match="invalid cron expression 'nope'"):
        app.schedule("x", cron="nope", kind="noop")
    app.schedule("y", every="1m", kind="unknown_kind")
    with pytest.raises(ConfigError) as caught:
        app.check_schedules()
    assert str(caught.value).startswith(
        "invalid schedule 'y': no handler for kind 'unknown_kind' (known: "
    )


async def test_bad_zones_intervals_and_rates_are_422_not_500(idle_web: Web) -> None:
    client = idle_web.test_client()
    for body, message in [
        (
            {"name": "s", "cron": "0 9 * * *", "tz": "Europe", "kind": "noop"},
            "unknown time zone 'Europe': expected an IANA name such as 'UTC' or 'Europe/Berlin'",
        ),
        (
            {"name": "s", "every": "3000000d", "kind": "noop"},
            "invalid interval '3000000d': at most 36500d",
        ),
    ]:
        error = await error_of(await post(client, "/schedules", body), 422, "validation_failed")
        assert error["message"] == message
    error = await error_of(
        await post(client, "/queues/x", {"rate": "1/0.0001ms"}), 422, "validation_failed"
    )
    assert error["message"].endswith(
        "invalid rate '1/0.0001ms': the period must be from 1ms to 1000d"
    )


async def test_schedule_payloads_are_previewed_and_the_list_is_paged(
    idle_web: Web, database: db.Database
) -> None:
    big = "x" * 200_000
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, payload)"
        " SELECT 'big' || i, interval '1 h', 'noop', to_jsonb($1::text)"
        "   FROM generate_series(1, 3) AS i",
        big,
    )
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, payload)"
        " VALUES ('small', interval '1 h', 'noop', '{\"a\": 1}')"
    )
    client = idle_web.test_client()
    first = await (await client.get("/schedules?limit=2")).get_json()
    assert [s["name"] for s in first["schedules"]] == ["big1", "big2"]
    shown = first["schedules"][0]
    assert shown["payload_truncated"] is True
    assert len(shown["payload"]) == PREVIEW_CHARS and shown["payload"].startswith('"xxx')
    assert first["next"] == "/schedules?limit=2&after=big2"
    rest = await (await client.get(first["next"])).get_json()
    assert [s["name"] for s in rest["schedules"]] == ["big3", "small"]
    assert rest["schedules"][1]["payload"] == {"a": 1}
    assert rest["schedules"][1]["payload_truncated"] is False
    assert rest["next"] is None
    await error_of(await client.get("/schedules?limit=100000"), 422, "validation_failed")
    summary = await (await client.get("/ui/summary")).get_data(as_text=True)
    page = await (await client.get("/")).get_data(as_text=True)
    assert len(summary) < 100_000 and len(page) < 200_000, (len(summary), len(page))
