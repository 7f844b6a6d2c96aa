"""The console in a real headless Chromium: the task browser and its filters, the task page
with its traceback and actions, a bulk retry of 10,000 tasks, and the queues page.

Reads and clicks follow test_status_page_browser's rule: one script call finds the elements
and acts at once, no element handle is held across a re-render, and every wait polls the
page's state with a timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests.acceptance.proc import Notifyq, scalar, until
from tests.acceptance.test_status_page_browser import open_browser, text_of, texts_of, wait_until

pytestmark = pytest.mark.slow  # a headless Chromium and a notifyq process

Start = Callable[..., Notifyq]
# Only queue "default" is served: tasks put on another queue stay as the test left them.
SERVE = ("serve", "--queues", "default", "--shutdown-timeout", "0.5")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


def click(driver: webdriver.Chrome, css: str) -> bool:
    """Click the first enabled element ``css`` matches (found and clicked in one call)."""
    return bool(
        driver.execute_script(
            "const n = document.querySelector(arguments[0]);"
            "if (!n || n.disabled || n.closest('[hidden]')) return false; n.click(); return true;",
            css,
        )
    )


def fill(driver: webdriver.Chrome, form: str, values: dict[str, str]) -> None:
    """Set the named fields of ``form`` and submit it as a user would (Enter / the button)."""
    driver.execute_script(
        "const f = document.querySelector(arguments[0]);"
        "for (const [k, v] of Object.entries(arguments[1])) f.elements[k].value = v;"
        "f.requestSubmit();",
        form,
        values,
    )


def listed_ids(driver: webdriver.Chrome) -> list[int]:
    return [int(t) for t in texts_of(driver, "#tasks tbody td:first-child a")]


def no_console_errors(driver: webdriver.Chrome, *, answered: str = "") -> None:
    """No script error, no failed load; but for ``answered`` (a request whose error status
    the page expects and handles, as the 401 that asks for the token)."""
    log: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [
        e
        for e in log
        if e["level"] == "SEVERE"
        and not (answered and e["source"] == "network" and answered in e["message"])
    ]
    assert errors == []


def insert(database_url: str, sql: str) -> list[int]:
    return [int(i) for i in scalar(database_url, sql).split()]


def test_a_filter_lives_in_the_url_and_a_pasted_link_opens_it(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    wanted = insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status, attempts, error, finished_at) "
        "SELECT 'mail', 'send', 'error', 3, 'SMTPError: 421 try later', now() "
        "FROM generate_series(1, 60) RETURNING id",
    )
    insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status) VALUES ('mail', 'send', 'cancelled'),"
        " ('mail', 'resize', 'cancelled'), ('other', 'send', 'cancelled') RETURNING id",
    )
    serve = notifyq(database_url, *SERVE)
    base = serve.http_url()
    browser.get(base + "/ui/tasks")
    wait_until(browser, lambda d: len(listed_ids(d)) == 50)
    fill(browser, "#filter", {"status": "error", "queue": "mail", "kind": "send"})
    wait_until(browser, lambda d: "status=error" in d.current_url)
    url = browser.current_url
    assert url.endswith("/ui/tasks?status=error&queue=mail&kind=send")
    newest_50 = sorted(wanted, reverse=True)[:50]
    wait_until(browser, lambda d: listed_ids(d) == newest_50)

    # The link pasted into a fresh browser opens the same view, its form filled in.
    other = open_browser(mobile=True)
    try:
        other.get(url)
        wait_until(other, lambda d: listed_ids(d) == newest_50)
        assert other.execute_script(
            "const f = document.getElementById('filter').elements;"
            "return [f.status.value, f.queue.value, f.kind.value]"
        ) == ["error", "mail", "send"]
        # Usable on a phone: nothing wider than its 390 px.
        assert other.execute_script("return document.documentElement.clientWidth") == 390
        assert (
            other.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            <= 0
        )
        # "older" pages by id, and the filter stays in the URL.
        assert click(other, "#older")
        wait_until(other, lambda d: "before=" in d.current_url)
        wait_until(other, lambda d: listed_ids(d) == sorted(wanted, reverse=True)[50:])
        assert "status=error&queue=mail&kind=send" in other.current_url
        no_console_errors(other)
    finally:
        other.quit()

    # From the keyboard alone: type into a field, Enter applies the filter.
    browser.execute_script("document.querySelector('#filter [name=error]').focus()")
    ActionChains(browser).send_keys("421 TRY" + Keys.ENTER).perform()
    wait_until(browser, lambda d: "error=421+TRY" in d.current_url)
    wait_until(browser, lambda d: listed_ids(d) == newest_50)
    no_console_errors(browser)
    # A bad value is named, not a blank page.
    browser.get(base + "/ui/tasks?status=sleeping")
    wait_until(browser, lambda d: "status" in text_of(d, "#list-message"))


def test_a_task_page_shows_its_traceback_and_retries_it_with_the_token_asked_once(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    serve = notifyq(database_url, *SERVE, env={"API_TOKEN": "s3cret-console-token-0042"})
    base = serve.http_url()
    # The demo handler refuses a payload that is not a JSON string.
    (task_id,) = insert(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) VALUES ('reverse', '[1]', 1) "
        "RETURNING id",
    )
    until_status(database_url, task_id, "error")
    # Nobody takes it again: the retried task stays pending for the test to see.
    scalar(database_url, "INSERT INTO notifyq.queues (name, paused) VALUES ('default', true)")

    browser.get(f"{base}/ui/tasks/{task_id}")
    wait_until(browser, lambda d: "PayloadError" in text_of(d, "#attempts tbody"))
    assert texts_of(browser, "#attempts tbody tr td:nth-child(2)")[0] == "failed"
    traceback = browser.execute_script(
        "const d = document.querySelector('#attempts details');"
        "if (!d) return null; d.open = true; return d.querySelector('pre').innerText"
    )
    assert traceback is not None and "Traceback (most recent call last)" in traceback
    assert "PayloadError" in traceback

    # The first change asks for the token; it is kept for the tab, never put in a URL.
    assert click(browser, '#actions [data-do="retry"]')
    wait_until(
        browser, lambda d: d.execute_script("return document.getElementById('token-dialog').open")
    )
    browser.execute_script(
        "const d = document.getElementById('token-dialog');"
        "d.querySelector('input').value = 's3cret-console-token-0042';"
        "d.querySelector('form').requestSubmit(d.querySelector('button[value=save]'))"
    )
    wait_until(browser, lambda d: text_of(d, "#task-status") == "pending")
    assert "is pending" in text_of(browser, "#action-message")
    assert (
        scalar(database_url, f"SELECT status FROM notifyq.tasks WHERE id = {task_id}") == "pending"
    )
    assert "s3cret" not in browser.current_url
    # The next changes do not ask again.
    fill(browser, "#priority-form", {"priority": "high"})
    wait_until(browser, lambda d: text_of(d, "#task-priority") == "10")
    assert "priority: task" in text_of(browser, "#action-message")
    assert click(browser, '#actions [data-do="cancel"]')
    wait_until(browser, lambda d: text_of(d, "#task-status") == "cancelled")
    assert not browser.execute_script("return document.getElementById('token-dialog').open")
    no_console_errors(
        browser,
        answered=f"/tasks/{task_id}/retry - Failed to load resource: the server responded with a status of 401",
    )


def until_status(database_url: str, task_id: int, status: str, timeout: float = 30) -> None:
    query = f"SELECT status FROM notifyq.tasks WHERE id = {task_id}"
    until(lambda: scalar(database_url, query) == status, timeout=timeout)


def test_bulk_retry_of_10000_failed_tasks_through_preview_and_confirmation(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status, attempts, error, finished_at) "
        "SELECT 'bulk', 'resize', 'error', 3, 'TimeoutError: took ' || g || ' ms', now() "
        "FROM generate_series(1, 10000) g RETURNING 0",
    )
    # Failures the filter does not match stay as they are.
    insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status, attempts, error, finished_at) "
        "VALUES ('other', 'resize', 'error', 3, 'TimeoutError: took 5 ms', now()) RETURNING id",
    )
    serve = notifyq(database_url, *SERVE)
    browser.get(serve.http_url() + "/ui/tasks?status=error&queue=bulk")
    wait_until(browser, lambda d: len(listed_ids(d)) == 50)
    fill(browser, "#bulk-start", {"action": "retry"})
    wait_until(browser, lambda d: "10,000 tasks match" in text_of(d, "#bulk-question"))
    assert text_of(browser, "#bulk-confirm") == "Retry 10,000 tasks"
    # Nothing changes before the confirmation.
    assert (
        scalar(database_url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'pending'") == "0"
    )
    assert click(browser, "#bulk-confirm")
    wait_until(browser, lambda d: text_of(d, "#bulk-result").startswith("Done"), timeout=90)
    assert text_of(browser, "#bulk-result") == (
        "Done: 10,000 changed, 0 skipped (their state no longer allowed it)."
    )
    assert text_of(browser, "#bulk-progress-text") == "10,000 / 10,000"
    counts = scalar(
        database_url,
        "SELECT queue || ':' || status || ':' || count(*) FROM notifyq.tasks "
        "GROUP BY queue, status ORDER BY 1",
    ).split()
    assert counts == ["bulk:pending:10000", "other:error:1"]
    no_console_errors(browser)


def test_a_queue_and_a_schedule_are_paused_and_run_from_the_queues_page(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind) VALUES ('mail', 'send'), ('mail', 'send') "
        "RETURNING id",
    )
    scalar(
        database_url,
        "INSERT INTO notifyq.schedules (name, every, kind, queue) "
        "VALUES ('digest', '1 day', 'send', 'mail')",
    )
    serve = notifyq(database_url, *SERVE)
    browser.get(serve.http_url() + "/ui/queues")
    wait_until(browser, lambda d: click(d, '[data-queue="mail"][data-do="pause"]'))
    wait_until(browser, lambda d: "queue mail paused" in text_of(d, "#queues-message"))
    wait_until(browser, lambda d: "paused" in text_of(d, 'tr[data-queue="mail"]'))
    paused = "SELECT paused FROM notifyq.queues WHERE name = 'mail'"
    assert scalar(database_url, paused) == "t"
    # Its limits from the same row: an empty field removes a limit.
    assert click(browser, '[data-queue="mail"][data-do="limits"]')
    fill(browser, "#limits", {"concurrency": "3", "rate": "10/s"})
    wait_until(browser, lambda d: "limits of mail saved" in text_of(d, "#queues-message"))
    row = "SELECT concurrency || ' ' || rate_count FROM notifyq.queues WHERE name = 'mail'"
    assert scalar(database_url, row) == "3 10"
    wait_until(browser, lambda d: click(d, '[data-queue="mail"][data-do="resume"]'))
    wait_until(browser, lambda d: "queue mail resumed" in text_of(d, "#queues-message"))
    assert scalar(database_url, paused) == "f"

    # A schedule, on the same page: pause it, then run one tick now (paused or not).
    assert click(browser, '[data-schedule="digest"][data-do="pause"]')
    wait_until(browser, lambda d: "(paused)" in text_of(d, 'tr[data-schedule="digest"]'))
    assert scalar(database_url, "SELECT paused FROM notifyq.schedules") == "t"
    assert click(browser, '[data-schedule="digest"][data-do="run"]')
    wait_until(
        browser, lambda d: "one run added now for digest" in text_of(d, "#schedules-message")
    )
    added = "SELECT count(*) FROM notifyq.tasks WHERE schedule_name = 'digest'"
    assert scalar(database_url, added) == "1"
    no_console_errors(browser)


def test_a_read_only_server_says_so_and_offers_no_action(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    (task_id,) = insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status, attempts, error, finished_at) "
        "VALUES ('mail', 'send', 'error', 3, 'SMTPError: 421', now()) RETURNING id",
    )
    # A pending task: the queues page lists the queues with live tasks or limits.
    insert(
        database_url, "INSERT INTO notifyq.tasks (queue, kind) VALUES ('mail', 'send') RETURNING id"
    )
    serve = notifyq(database_url, *SERVE, env={"HTTP_READ_ONLY": "true"})
    base = serve.http_url()
    browser.get(f"{base}/ui/tasks/{task_id}")
    wait_until(browser, lambda d: "HTTP_READ_ONLY" in text_of(d, "#read-only"))
    assert browser.execute_script(
        "return Array.from(document.querySelectorAll('#actions button'), (b) => b.disabled)"
    ) == [True, True, True, True]
    browser.get(f"{base}/ui/queues")
    wait_until(browser, lambda d: texts_of(d, '[data-queue="mail"][data-do="pause"]') != [])
    assert browser.execute_script(
        'return document.querySelector(\'[data-queue="mail"][data-do="pause"]\').disabled'
    )
    browser.get(f"{base}/ui/tasks?status=error")
    wait_until(browser, lambda d: listed_ids(d) == [task_id])
    assert browser.execute_script("return document.getElementById('bulk-preview').disabled")


def test_triage_groups_failures_and_retries_one_group(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    timeouts = insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status, attempts, error, finished_at) "
        "SELECT 'img', 'resize', 'error', 3, 'TimeoutError: image ' || g || ' took 31 s', now() "
        "FROM generate_series(1, 30) g RETURNING id",
    )
    insert(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind, status, attempts, error, finished_at) "
        "SELECT 'img', 'resize', 'error', 3, 'OSError: disk full on /dev/sd' || g, now() "
        "FROM generate_series(1, 5) g RETURNING id",
    )
    serve = notifyq(database_url, *SERVE)
    browser.get(serve.http_url() + "/ui/failures")
    wait_until(browser, lambda d: len(texts_of(d, "#groups tbody tr[data-group]")) == 2)
    rows = texts_of(browser, "#groups tbody tr[data-group]")
    assert rows[0].startswith("30\tresize\tTimeoutError: image <n> took <n> s")
    assert rows[1].startswith("5\tresize\tOSError: disk full")
    # "show tasks" opens the browser on that group alone.
    group = browser.execute_script(
        "return document.querySelector('#groups tbody tr').dataset.group"
    )
    assert click(browser, f'tr[data-group="{group}"] a')
    wait_until(browser, lambda d: f"fingerprint={group}" in d.current_url)
    wait_until(browser, lambda d: len(listed_ids(d)) == 30)
    browser.back()
    wait_until(browser, lambda d: click(d, f'button[data-group="{group}"][data-do="retry"]'))
    wait_until(browser, lambda d: text_of(d, "#bulk-confirm") == "Retry 30 tasks")
    assert click(browser, "#bulk-confirm")
    wait_until(browser, lambda d: text_of(d, "#bulk-result").startswith("Done: 30 changed"))
    statuses = scalar(
        database_url,
        f"SELECT (id <= {max(timeouts)})::text || ':' || status || ':' || count(*) "
        "FROM notifyq.tasks GROUP BY id <= " + str(max(timeouts)) + ", status ORDER BY 1",
    ).split()
    assert statuses == ["false:error:5", "true:pending:30"]
    no_console_errors(browser)
