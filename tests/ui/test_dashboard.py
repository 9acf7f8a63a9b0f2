"""The "LLM batches" view after two runs of the triage example, one with injected item failures.

Real ``airflow standalone`` (the plugin loaded from the package's entry point), real Chromium
through the UI's own navigation, and the plugin's API asked as three users: the admin, a
signed-in user without rights on the DAG (a SimpleAuthManager user with no role), and nobody.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.ui.browser import Browser
from tests.ui.conftest import DAG_ID, OUTSIDER, ROOT, RUN_ID, RUN_TIMEOUT_SECONDS
from tests.ui.test_browser import _log_in, chromium  # noqa: F401  (the fixture)

pytestmark = pytest.mark.ui

FAILING_RUN_ID = "ui_failures_run"
DOCS_SCREENSHOT = ROOT / "docs" / "ui-llm-batches.png"
FRAME = "document.querySelector('iframe')?.contentDocument"


@pytest.fixture(scope="module")
def failing_run(ui_stack: Any, triage_run: dict[str, Any]) -> dict[str, Any]:
    """A second run of the triage example in which the provider refuses about 20% of the items."""
    ui_stack.emulator.update_scenario(item_errors={"invalid_request": 0.2, "content_filtered": 0.05})
    try:
        ui_stack.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": FAILING_RUN_ID, "logical_date": None})
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            run = ui_stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{FAILING_RUN_ID}")
            if run["state"] in ("success", "failed"):
                break
            time.sleep(2)
    finally:
        ui_stack.emulator.update_scenario(item_errors={})
    assert run["state"] == "success", f"the run ended {run['state']}; see {ui_stack.log_path}"
    return dict(run)


def _get(stack: Any, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(stack.url + path, headers=headers), timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _token_of(stack: Any, user: str) -> str:
    password = json.loads(stack.password_file.read_text())[user]
    answer = stack.request("POST", "/auth/token", {"username": user, "password": password}, auth=False)
    return str(answer["access_token"])


def test_the_api_gives_both_runs_to_the_admin_and_nothing_to_a_user_without_rights(ui_stack, failing_run):
    status, data = _get(ui_stack, f"/llm-batches/api/dags/{DAG_ID}/steps", ui_stack.token())
    assert status == 200
    rows = {row["run_id"]: row for row in data["steps"]}
    clean, failing = rows[RUN_ID], rows[FAILING_RUN_ID]
    assert clean["items"] == failing["items"] == 200 and clean["success_rate"] == 1.0
    assert failing["success_rate"] < 0.9 and failing["by_error_type"]["invalid_request"] > 0
    assert clean["cost"] > 0 and clean["batches"][0]["url"].startswith("https://platform.openai.com/")
    assert _get(ui_stack, "/llm-batches/api/dags", ui_stack.token())[1]["dag_ids"] == [DAG_ID]

    outsider = _token_of(ui_stack, OUTSIDER)
    status, body = _get(ui_stack, f"/llm-batches/api/dags/{DAG_ID}/steps", outsider)
    assert status == 403 and FAILING_RUN_ID not in body
    assert _get(ui_stack, "/llm-batches/api/dags", outsider) == (200, {"dag_ids": []})
    assert _get(ui_stack, f"/llm-batches/api/dags/{DAG_ID}/steps", None)[0] == 401


def test_the_view_in_the_ui_shows_both_runs(chromium, ui_stack, failing_run, tmp_path):  # noqa: F811
    browser = Browser(tmp_path / "chromium-profile").start()
    try:
        _log_in(browser, ui_stack)
        browser.goto(f"{ui_stack.url}/plugin/llm-batches")
        # The UI shows the plugin's page in a frame of its own origin; wait for both runs' rows.
        browser.wait_for(f"{FRAME}?.body?.dataset.ready === '1'", what="the LLM batches page to load")
        browser.wait_for(
            f"{FRAME}.querySelectorAll('#steps tbody tr').length >= 2 && "
            f"{FRAME}.querySelectorAll('#trend circle').length >= 4",
            what="both runs' rows and the trend chart",
        )
        text = str(browser.evaluate(f"{FRAME}.body.innerText"))
        frame_src = str(browser.evaluate("document.querySelector('iframe').src"))
        time.sleep(1.0)  # let the last repaint land before the screenshot
        shot = browser.screenshot(tmp_path / "ui-llm-batches.png")
    finally:
        browser.stop()
    assert frame_src == f"{ui_stack.url}/llm-batches/" and RUN_ID in text and FAILING_RUN_ID in text
    assert "100.0%" in text and "invalid_request: " in text and "$0." in text
    assert shot.stat().st_size > 20_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):  # refresh the docs' picture on purpose only
        shutil.copy(shot, DOCS_SCREENSHOT)
