"""Screenshots of the console for the docs (not a test): ``make screenshots``.

Starts a private embedded PostgreSQL and ``notifyq serve``, fills the table with a picture
a console user meets (failures in a few groups, done work, pending work on a paused queue,
a schedule, a task that failed with a traceback), then saves the task browser, a task page
and the failure triage at 1280 px (desktop) and 390 px (phone) wide into ``docs/img/``.
Needs Chromium and chromedriver (``make system-deps``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver

import notifyq
from notifyq.testing import EmbeddedServer
from tests import pg
from tests.acceptance.proc import Notifyq, until
from tests.acceptance.test_status_page_browser import open_browser, texts_of, wait_until

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"

SEED = """
INSERT INTO notifyq.tasks (queue, kind, payload, status, attempts, error, created_at,
                           started_at, finished_at)
SELECT q, k, jsonb_build_object('n', g), s, a, e, t - interval '2 s', t - interval '1 s', t
FROM generate_series(1, 400) g,
LATERAL (SELECT now() - g * interval '13 s' AS t) tt,
LATERAL (SELECT
    (ARRAY['default', 'mail', 'images'])[1 + g % 3] AS q,
    (ARRAY['send_receipt', 'resize', 'sync_crm', 'fetch_url'])[1 + g % 4] AS k,
    CASE WHEN g % 5 = 0 THEN 'error' WHEN g % 17 = 0 THEN 'cancelled' ELSE 'done' END AS s,
    CASE WHEN g % 5 = 0 THEN 3 ELSE 1 END AS a,
    CASE WHEN g % 5 <> 0 THEN NULL
         WHEN g % 4 = 1 THEN 'TimeoutError: resize of image ' || g || ' took over 30 s'
         WHEN g % 4 = 3 THEN 'HTTPError: 503 from https://example.com/item/' || g
         ELSE 'ConnectionError: SMTP server refused connection (attempt ' || g % 3 || ')'
    END AS e) v;
INSERT INTO notifyq.queues (name, paused) VALUES ('mail', true);
INSERT INTO notifyq.tasks (queue, kind, payload, priority)
SELECT 'mail', 'send_receipt', jsonb_build_object('order', 1000 + g), g % 3
FROM generate_series(1, 40) g;
"""


def shoot(driver: webdriver.Chrome, base: str, path: str, name: str, ready: str) -> None:
    driver.get(base + path)
    wait_until(driver, lambda d: texts_of(d, ready) != [])
    # Open the first traceback, so that the picture shows one.
    driver.execute_script(
        "const d = document.querySelector('#attempts details'); if (d) d.open = true;"
    )
    width = int(driver.execute_script("return window.innerWidth"))
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    mobile = width < 600
    # The whole page (up to a limit), at the device's width.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": min(height, 1400),
            "deviceScaleFactor": 2 if mobile else 1,
            "mobile": mobile,
        },
    )
    assert driver.save_screenshot(str(OUT / f"{name}.png")), name
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    print(f"docs/img/{name}.png ({width} px wide)")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer()
    scratch = Path(tempfile.mkdtemp(prefix="notifyq-"))
    started: list[Notifyq] = []
    try:
        url = pg.with_database(server.url, "postgres")
        migrate = Notifyq(url, "migrate")
        started.append(migrate)
        assert migrate.proc.wait(timeout=60) == 0, migrate.stderr()
        pg.psql(url, SEED)
        failing = pg.psql(
            url,
            "INSERT INTO notifyq.tasks (kind, payload, max_attempts) "
            """VALUES ('reverse', '{"image": 41, "sizes": [64, 256, 1024]}', 2) RETURNING id""",
        )
        # Served from a copy of the package under a neutral prefix, as an installed one
        # would be: the picture's traceback names no developer's checkout.
        site = scratch / "site-packages"
        shutil.copytree(
            Path(notifyq.__file__).parent,
            site / "notifyq",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        # (A wheel ships the migrations inside the package; the source tree beside it.)
        shutil.copytree(Path(notifyq.__file__).parents[1] / "migrations", site / "migrations")
        env = {"PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
        serve = Notifyq(url, "serve", "--queues", "default", env=env)
        started.append(serve)
        query = f"SELECT status FROM notifyq.tasks WHERE id = {failing}"
        try:
            until(lambda: pg.psql(url, query) == "error", timeout=60)
        except AssertionError:
            print(serve.stderr()[-3000:], file=sys.stderr)
            raise
        base = serve.http_url()
        pages = [
            ("/ui/tasks?status=error", "console-tasks", "#tasks tbody a"),
            (f"/ui/tasks/{failing}", "console-task", "#attempts details"),
            ("/ui/failures", "console-failures", "#groups tbody button"),
        ]
        for mobile, suffix in [(False, ""), (True, "-phone")]:
            driver = open_browser(mobile=mobile)
            try:
                for path, name, ready in pages:
                    shoot(driver, base, path, name + suffix, ready)
            finally:
                driver.quit()
    finally:
        for proc in started:
            proc.kill()
            proc.close()
        server.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
