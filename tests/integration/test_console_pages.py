"""The console's pages as HTML: bounded, escaped, and saying when actions are off (their
script is driven in Chromium by tests/acceptance/test_console_browser.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifyq import db
from tests.helpers import insert, running_web

MB = 1024 * 1024


async def test_a_big_payload_is_a_bounded_preview_with_a_download_link(
    database: db.Database,
) -> None:
    big = "x" * (3 * MB)
    task_id = await insert(
        database, "noop", {"blob": big}, status="error", error="boom", finished_at=datetime.now(UTC)
    )
    async with running_web(database, workers=False) as web:
        page = await web.test_client().get(f"/ui/tasks/{task_id}")
        html = await page.get_data(as_text=True)
    assert page.status_code == 200 and len(html) < 64 * 1024
    assert '<p id="task-payload-cut">Cut at 4096 characters.</p>' in html
    assert '<p id="task-result-cut" hidden>' in html
    assert f'href="/tasks/{task_id}/payload" download=' in html


async def test_the_filter_form_holds_the_query_escaped(database: db.Database) -> None:
    async with running_web(database, workers=False) as web:
        page = await web.test_client().get(
            "/ui/tasks", query_string={"queue": '"><script>x()</script>', "schedule": "nightly"}
        )
        html = await page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'value="&#34;&gt;&lt;script&gt;x()&lt;/script&gt;"' in html
    assert "<script>x()" not in html
    # A rarer filter in the address opens the fold that holds it.
    assert '<details id="more-filters" open>' in html
    assert 'name="schedule" value="nightly"' in html


@pytest.mark.parametrize("path", ["/ui/tasks", "/ui/failures", "/ui/queues", "/"])
async def test_console_pages_carry_the_security_headers(database: db.Database, path: str) -> None:
    async with running_web(database, workers=False) as web:
        response = await web.test_client().get(path)
        html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert '<body data-read-only="false">' in html and 'id="read-only"' not in html
