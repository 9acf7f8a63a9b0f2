"""The Airflow UI on a finished triage run: headless Chromium, the extra link, the cost summary.

Everything runs for real: ``airflow standalone`` and the emulator (see ``conftest.py``), Debian's
Chromium driven over the DevTools protocol. Without Chromium the browser test is skipped on a
developer's machine and fails in CI (``CI`` set), where ``make browser`` installs it first.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.pricing import PRICES_AS_OF
from tests.ui.browser import CHROMIUM, Browser
from tests.ui.conftest import API_KEY, DAG_ID, ROOT, RUN_ID

pytestmark = pytest.mark.ui

TASKS = ("submit", "wait", "results")
DOCS_SCREENSHOT = ROOT / "docs" / "ui-triage-run.png"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def test_the_run_page_shows_the_three_tasks_succeeded(chromium, ui_stack, triage_run, tmp_path):
    browser = Browser(tmp_path / "chromium-profile").start()
    try:
        _log_in(browser, ui_stack)
        browser.goto(f"{ui_stack.url}/dags/{DAG_ID}/runs/{urllib.parse.quote(RUN_ID)}")
        # The page is a React app: wait until it has drawn every task with its state, in the table
        # and in the grid (whose cells are a#grid-<run>-<task> in Airflow 3.1 to 3.3).
        browser.wait_for(
            "(() => { const t = document.body.innerText;"
            f" return {list(TASKS)!r}.every(task => t.includes(task)"
            f" && document.getElementById('grid-{RUN_ID}-' + task)?.querySelector('*'))"
            " && (t.match(/success/gi) || []).length > 3; })()",
            what="the run's tasks and their states",
        )
        time.sleep(1.0)  # let the last repaint land before the screenshot
        text = browser.text()
        shot = browser.screenshot(tmp_path / "ui-triage-run.png")
    finally:
        browser.stop()
    assert RUN_ID in text
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):  # refresh the docs' picture on purpose only
        shutil.copy(shot, DOCS_SCREENSHOT)
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one


def test_every_task_succeeded_and_the_extra_links_open_the_batch_console(ui_stack, triage_run):
    instances = ui_stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances")
    states = {ti["task_id"]: ti["state"] for ti in instances["task_instances"]}
    assert all(states[task] == "success" for task in TASKS), states

    summary = _results_summary(ui_stack)
    [batch_id] = summary["batch_ids"]
    for task in ("submit", "wait"):
        links = ui_stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/{task}/links")
        links = links.get("extra_links", links)
        assert links["Batch console"] == f"https://platform.openai.com/batches/{batch_id}"
        assert links["All batches"] == "https://platform.openai.com/batches"


def test_the_results_xcom_holds_the_cost_summary(ui_stack, triage_run):
    summary = _results_summary(ui_stack)
    assert summary["items"] == summary["succeeded"] == 200
    cost = summary["cost"]
    expected = (summary["input_tokens"] * 0.20 + summary["output_tokens"] * 0.80) / 1e6  # gpt-4.1-mini, batch
    assert cost["currency"] == "USD"
    assert cost["batch"] == pytest.approx(expected, abs=1e-6)
    assert cost["realtime"] == pytest.approx(2 * expected, abs=1e-6)
    assert cost["savings"] == pytest.approx(expected, abs=1e-6)
    assert f"as published {PRICES_AS_OF}" in cost["price_source"]


def test_the_connection_test_answers_success_against_the_emulator(ui_stack):
    for provider, url in _base_urls(ui_stack).items():
        answer = _test_connection(ui_stack, provider, url, API_KEY)
        assert answer["status"] is True, (provider, answer)
        assert "Connected" in answer["message"]


def test_the_connection_test_explains_a_wrong_key_without_showing_it(ui_stack):
    for provider, url in _base_urls(ui_stack).items():
        answer = _test_connection(ui_stack, provider, url, "sk-wrong-key-1234")
        assert answer["status"] is False, (provider, answer)
        assert answer["message"].startswith("The provider rejected the API key (HTTP 40"), (provider, answer)
        assert "sk-wrong-key-1234" not in answer["message"]


def _log_in(browser: Browser, stack: Any) -> None:
    """Through the login form, as a person would."""
    browser.goto(f"{stack.url}/auth/login")
    browser.wait_for("!!document.querySelector('input[name=username]')", what="the login form")
    for name, value in (("username", "admin"), ("password", stack.password)):
        browser.evaluate(f"document.querySelector('input[name={name}]').focus()")
        browser.send("Input.insertText", {"text": value})
    browser.wait_for("!document.querySelector('button[type=submit]').disabled", what="the Sign in button")
    browser.evaluate("document.querySelector('button[type=submit]').click()")
    browser.wait_for("!location.pathname.startsWith('/auth')", what="the login to finish")


def _results_summary(stack: Any) -> dict[str, Any]:
    entry = stack.request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/results/xcomEntries/return_value"
    )
    value = entry["value"]
    if isinstance(value, str):  # Airflow 3.1 answers the stored JSON as text
        import json

        value = json.loads(value)
    return dict(value)


def _base_urls(stack: Any) -> dict[str, str]:
    emulator = stack.emulator
    return {
        "openai": emulator.openai_base_url,
        "anthropic": emulator.anthropic_base_url,
        "gemini": emulator.gemini_base_url,
    }


def _test_connection(stack: Any, provider: str, url: str, key: str) -> dict[str, Any]:
    body = {"connection_id": f"ui_test_{provider}", "conn_type": f"llm_batch_{provider}", "host": url, "password": key}
    return dict(stack.request("POST", "/api/v2/connections/test", body))
