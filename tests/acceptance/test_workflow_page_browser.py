"""Workflows on the pages, in a real headless Chromium: waiting counts, live batches, a
task's parents and children, all kept live without a reload."""

from __future__ import annotations

import signal

import pytest
from selenium import webdriver

from tests.acceptance.proc import scalar
from tests.acceptance.test_status_page_browser import (
    Start,
    browser,  # noqa: F401 (a fixture)
    text_of,
    texts_of,
    wait_until,
)

pytestmark = pytest.mark.slow  # a headless Chromium


def test_workflows_on_the_status_and_task_pages(
    database_url: str,
    notifyq: Start,
    browser: webdriver.Chrome,  # noqa: F811
) -> None:
    serve = notifyq(database_url, "serve", "--shutdown-timeout", "0.5")
    base = serve.http_url()
    browser.get(base + "/")
    wait_until(browser, lambda d: text_of(d, "#live") == "live")
    browser.execute_script("window.notReloaded = true")

    # A chain whose first step runs for a minute, and a batch of two members, one of which
    # runs for a minute.
    parent, child, grandchild = scalar(
        database_url,
        "WITH p AS (INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '60') RETURNING id),"
        " c AS (INSERT INTO notifyq.tasks (kind, payload, depends_on)"
        "       SELECT 'reverse', '\"x\"', ARRAY[p.id] FROM p RETURNING id),"
        " g AS (INSERT INTO notifyq.tasks (kind, payload, depends_on)"
        "       SELECT 'reverse', '\"y\"', ARRAY[c.id] FROM c RETURNING id)"
        " SELECT p.id FROM p UNION ALL SELECT c.id FROM c UNION ALL SELECT g.id FROM g",
    ).split()
    batch, slow_member, callback = scalar(
        database_url,
        "WITH b AS (INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id),"
        " m AS (INSERT INTO notifyq.tasks (kind, payload, batch_id)"
        "       SELECT k, p::jsonb, b.id FROM b, (VALUES ('sleep', '60'), ('noop', '{}')) AS v(k, p)"
        "       RETURNING id, kind),"
        " cb AS (INSERT INTO notifyq.tasks (kind, after_batch) SELECT 'noop', b.id FROM b"
        "        RETURNING id)"
        " SELECT b.id FROM b UNION ALL (SELECT id FROM m WHERE kind = 'sleep')"
        " UNION ALL SELECT id FROM cb",
    ).split()

    # Waiting: the two steps and the callback, in the tile and in the queue's row (the
    # first status column), and the batch's progress.
    wait_until(browser, lambda d: text_of(d, '[data-count="waiting"]') == "3")
    wait_until(browser, lambda d: text_of(d, "#queues tbody tr").split()[:2] == ["default", "3"])
    wait_until(
        browser,
        lambda d: text_of(d, "#batches tbody tr").split() == [batch, "2", "1", "0", "1", callback],
    )
    wait_until(browser, lambda d: len(texts_of(d, "#running tbody a")) == 2)

    # The first step fails (cancelled while it runs): its dependents are cancelled, live.
    assert scalar(database_url, f"SELECT notifyq.cancel({parent})") == "cancelling"
    wait_until(browser, lambda d: text_of(d, '[data-count="waiting"]') == "1")
    assert browser.execute_script("return window.notReloaded") is True

    # The middle step's page: its parent and child with their statuses, and why it ended.
    browser.get(f"{base}/ui/tasks/{child}")
    wait_until(browser, lambda d: text_of(d, "#task-status") == "cancelled")
    assert texts_of(browser, "#parents tbody tr") == [f"{parent}\tsleep\tcancelled"]
    assert texts_of(browser, "#children tbody tr") == [
        f"{grandchild}\treverse\tcancelled\tdepends_on"
    ]
    last = texts_of(browser, "#history tbody tr")[-1].split("\t")
    assert (last[1], last[4], last[5]) == (
        "cancelled",
        f"parent task {parent} ended cancelled",
        f"parent task {parent}",
    )

    # The callback's page follows its batch live: the slow member is cancelled, the batch
    # completes with a failed member, and the callback is cancelled.
    browser.get(f"{base}/ui/tasks/{callback}")
    wait_until(browser, lambda d: text_of(d, "#live") == "live")
    browser.execute_script("window.notReloaded = true")
    assert text_of(browser, "#task-status") == "waiting"
    assert text_of(browser, "#task-batch") == (f"batch {batch}: 1 done, 0 failed, 1 remaining of 2")
    assert scalar(database_url, f"SELECT notifyq.cancel({slow_member})") == "cancelling"
    wait_until(browser, lambda d: text_of(d, "#task-status") == "cancelled")
    wait_until(
        browser,
        lambda d: text_of(d, "#task-batch") == f"batch {batch}: 1 done, 1 failed, 0 remaining of 2",
    )
    assert browser.execute_script("return window.notReloaded") is True
    log = browser.get_log("browser")  # type: ignore[no-untyped-call]
    assert [e for e in log if e["level"] == "SEVERE"] == []

    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=20) == 0
