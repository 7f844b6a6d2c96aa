"""The status page in a real headless Chromium: it updates live, without a reload.

Needs Debian's `chromium` and `chromium-driver` (installed by `make test` through
`.ci/system-deps`). Screenshots go to `artifacts/`.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.acceptance.proc import Notifyq, scalar

pytestmark = pytest.mark.slow  # a headless Chromium

Start = Callable[..., Notifyq]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"none of {names} on PATH: run .ci/system-deps (make test does)")


def open_browser(*, mobile: bool = False) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ]:
        options.add_argument(flag)
    if mobile:
        options.add_experimental_option(
            "mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}}
        )
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


# The page re-renders its tables whenever an event arrives, so an element handle from
# find_element can be stale by the time its text is read (StaleElementReferenceException on
# a loaded machine). Every read below is one script call that finds the elements and reads
# their text at once: the test holds no handle across a re-render.


def wait_until(driver: webdriver.Chrome, check: Callable[[Any], Any], timeout: float = 30) -> Any:
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(check)


def texts_of(driver: webdriver.Chrome, css: str) -> list[str]:
    """The visible text of every element ``css`` matches, read in one script call."""
    texts = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), (n) => n.innerText.trim())",
        css,
    )
    return [str(t) for t in texts]


def text_of(driver: webdriver.Chrome, css: str) -> str:
    """The visible text of the first element ``css`` matches (NoSuchElementException, which
    :func:`wait_until` waits out, while there is none)."""
    texts = texts_of(driver, css)
    if not texts:
        raise NoSuchElementException(f"nothing matches {css}")
    return texts[0]


def click_link(driver: webdriver.Chrome, text: str) -> bool:
    """Click the first link whose text is ``text`` (found and clicked in one script call)."""
    return bool(
        driver.execute_script(
            "const a = Array.from(document.querySelectorAll('a'))"
            ".find((n) => n.textContent.trim() === arguments[0]);"
            "if (a) a.click(); return a !== undefined;",
            text,
        )
    )


def test_status_page_updates_live_in_chromium(
    database_url: str, notifyq: Start, browser: webdriver.Chrome
) -> None:
    demo = {
        "DEMO_MIN_DELAY": "0.2",
        "DEMO_MAX_DELAY": "3",
        "DEMO_FAILURE_RATE": "0.3",
        "WORKER_COUNT": "4",
    }
    serve = notifyq(database_url, "serve", "--seed", "12", "--shutdown-timeout", "0.5", env=demo)
    base = serve.http_url()
    browser.get(base + "/")
    wait_until(browser, lambda d: text_of(d, "#live") == "live")
    # A marker that a reload would wipe out.
    browser.execute_script("window.notReloaded = true")
    done_before = int(text_of(browser, '[data-count="done"]'))

    task_id = int(
        scalar(
            database_url,
            "INSERT INTO notifyq.tasks (kind, payload) VALUES ('reverse', '\"from SQL\"') RETURNING id",
        )
    )
    # The event list names the task when it ends, and the counts follow.
    wait_until(browser, lambda d: str(task_id) in texts_of(d, "#events a"))
    wait_until(browser, lambda d: int(text_of(d, '[data-count="done"]')) > done_before)
    assert browser.execute_script("return window.notReloaded") is True

    # Let the demo tasks finish so the picture has failures and throughput in it.
    wait_until(
        browser,
        lambda d: (
            text_of(d, '[data-count="pending"]') == "0"
            and text_of(d, '[data-count="in_progress"]') == "0"
        ),
        timeout=60,
    )
    wait_until(browser, lambda d: text_of(d, "#throughput") != "0.00")
    # Two long tasks to show as running, two with a payload their handler refuses to show
    # as failures.
    ids = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '60'), "
        "('sleep', '60'), ('reverse', '[1]'), ('reverse', '[2]') "
        "RETURNING id",
    ).split()
    # (A demo task may have used up its attempts too: the failures list holds it as well.)
    wait_until(
        browser,
        lambda d: (
            len(texts_of(d, "#running tbody a")) == 2
            and set(texts_of(d, "#failures tbody a")) >= set(ids[2:])
        ),
    )
    assert "PayloadError: expected a JSON string" in text_of(browser, "#failures")
    assert browser.execute_script("return window.notReloaded") is True
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "status-page.png"))

    # The task's own page, reached by its link, shows its history.
    wait_until(browser, lambda d: click_link(d, str(task_id)))
    wait_until(browser, lambda d: d.current_url.endswith(f"/ui/tasks/{task_id}"))
    assert text_of(browser, "#task-status") == "done"
    assert "LQS morf" in text_of(browser, "#task-result")
    events = [row.split()[2] for row in texts_of(browser, "#history tbody tr")]
    assert events[-2:] == ["started", "done"]
    assert browser.save_screenshot(str(ARTIFACTS / "task-page.png"))

    # No console errors (no blocked CDN, no script error).
    log = browser.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [e for e in log if e["level"] == "SEVERE"]
    assert errors == []

    # Readable on a phone: a 390 px wide screen, nothing wider than it.
    phone = open_browser(mobile=True)
    try:
        phone.get(base + "/")
        wait_until(phone, lambda d: text_of(d, "#live") == "live")
        overflow = phone.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert phone.execute_script("return document.documentElement.clientWidth") == 390
        assert overflow <= 0
        assert phone.save_screenshot(str(ARTIFACTS / "status-page-phone.png"))
    finally:
        phone.quit()
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=20) == 0


def test_reads_hold_no_handle_across_a_re_render(browser: webdriver.Chrome) -> None:
    """The page below replaces its table's rows every millisecond, as the status page does
    on each event under load: reading through handles (find_elements, then .text) fails
    with StaleElementReferenceException; the helpers above never do."""
    page = (
        "<table id='t'><tbody></tbody></table><script>"
        "let n = 0; setInterval(() => { const tr = document.createElement('tr');"
        "tr.innerHTML = '<td><a href=x>' + (n++) + '</a></td>';"
        "document.querySelector('#t tbody').replaceChildren(tr); }, 1);</script>"
    )
    browser.get("data:text/html," + quote(page))
    wait_until(browser, lambda d: texts_of(d, "#t a") != [])
    for _ in range(300):
        (text,) = texts_of(browser, "#t tbody a")
        assert int(text) >= 0 and int(text_of(browser, "#t tbody tr")) >= 0
