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

from tests.acceptance.proc import Notifyq, scalar
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


def no_console_errors(driver: webdriver.Chrome) -> None:
    log: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    assert [e for e in log if e["level"] == "SEVERE"] == []


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
        assert other.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        ) <= 0
        # "older" pages by id, and the filter stays in the URL.
        assert click(other, "#older")
        wait_until(other, lambda d: "before=" in d.current_url)
        wait_until(other, lambda d: listed_ids(d) == sorted(wanted, reverse=True)[50:])
        assert "status=error&queue=mail&kind=send" in other.current_url
        no_console_errors(other)
    finally:
        other.quit()

    no_console_errors(browser)
    # A bad value is named, not a blank page.
    browser.get(base + "/ui/tasks?status=sleeping")
    wait_until(browser, lambda d: "status" in text_of(d, "#list-message"))
