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
from tests.ui.conftest import DAG_ID, GATES_DAG_ID, OUTSIDER, ROOT, RUN_ID, RUN_TIMEOUT_SECONDS, _wait_for_dag
from tests.ui.test_browser import _log_in, chromium  # noqa: F401  (the fixture)

pytestmark = pytest.mark.ui

FAILING_RUN_ID = "ui_failures_run"
DOCS_SCREENSHOT = ROOT / "docs" / "ui-llm-batches.png"
FRAME = "document.querySelector('iframe')?.contentDocument"


def _run_to_the_end(stack: Any, dag_id: str, run_id: str, item_errors: dict[str, float]) -> dict[str, Any]:
    """One run, with the emulator refusing these shares of the items while it goes."""
    _wait_for_dag(stack, dag_id)
    stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    stack.emulator.update_scenario(item_errors=item_errors)
    try:
        stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            run = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                break
            time.sleep(2)
    finally:
        stack.emulator.update_scenario(item_errors={})
    assert run["state"] == "success", f"{dag_id} ended {run['state']}; see {stack.log_path}"
    return dict(run)


@pytest.fixture(scope="module")
def failing_run(ui_stack: Any, triage_run: dict[str, Any]) -> dict[str, Any]:
    """A second run of the triage example in which the provider refuses about 25% of the items."""
    return _run_to_the_end(ui_stack, DAG_ID, FAILING_RUN_ID, {"invalid_request": 0.2, "content_filtered": 0.05})


@pytest.fixture(scope="module")
def gated_run(ui_stack: Any, failing_run: dict[str, Any]) -> dict[str, Any]:
    """A step with min_success_rate=0.95 in warn mode (and max_batch_age=1 s) below its gate."""
    return _run_to_the_end(ui_stack, GATES_DAG_ID, "ui_gated_run", {"invalid_request": 0.2})


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


def test_the_api_gives_both_runs_to_the_admin_and_nothing_to_a_user_without_rights(ui_stack, gated_run):
    status, data = _get(ui_stack, f"/llm-batches/api/dags/{DAG_ID}/steps", ui_stack.token())
    assert status == 200
    rows = {row["run_id"]: row for row in data["steps"]}
    clean, failing = rows[RUN_ID], rows[FAILING_RUN_ID]
    assert clean["items"] == failing["items"] == 200 and clean["success_rate"] == 1.0
    assert failing["success_rate"] < 0.9 and failing["by_error_type"]["invalid_request"] > 0
    assert clean["cost"] > 0 and clean["batches"][0]["url"].startswith("https://platform.openai.com/")
    assert _get(ui_stack, "/llm-batches/api/dags", ui_stack.token())[1]["dag_ids"] == [GATES_DAG_ID, DAG_ID]

    outsider = _token_of(ui_stack, OUTSIDER)
    status, body = _get(ui_stack, f"/llm-batches/api/dags/{DAG_ID}/steps", outsider)
    assert status == 403 and FAILING_RUN_ID not in body
    assert _get(ui_stack, "/llm-batches/api/dags", outsider) == (200, {"dag_ids": []})
    assert _get(ui_stack, f"/llm-batches/api/dags/{DAG_ID}/steps", None)[0] == 401


def _show(browser: Browser, dag_id: str, run_ids: list[str]) -> tuple[str, int, int]:
    """Pick a DAG in the page's selector; its text, rows and trend points once its runs are drawn."""
    # The page fills the selector from its API after loading: picking a DAG before its option is
    # there selects nothing (seen under load on the oldest line).
    browser.wait_for(
        f"(() => {{ const s = {FRAME}.getElementById('dag');"
        f" return !!s && [...s.options].some((o) => o.value === {dag_id!r}); }})()",
        what=f"{dag_id} in the page's selector",
    )
    browser.evaluate(
        f"(() => {{ const d = {FRAME}, s = d.getElementById('dag'); s.value = {dag_id!r};"
        " s.dispatchEvent(new d.defaultView.Event('change')); return true; })()"
    )
    browser.wait_for(
        f"(() => {{ const t = {FRAME}.querySelector('#steps tbody').innerText;"
        f" return {run_ids!r}.every((r) => t.includes(r)); }})()",
        what=f"{dag_id}'s runs",
    )
    count = f"{FRAME}.querySelectorAll"
    rows, points = browser.evaluate(f"[{count}('#steps tbody tr').length, {count}('#trend circle').length]")
    return str(browser.evaluate(f"{FRAME}.body.innerText")), int(rows), int(points)


def test_the_view_in_the_ui_shows_both_runs_and_flags_a_tripped_gate(chromium, ui_stack, gated_run, tmp_path):  # noqa: F811
    browser = Browser(tmp_path / "chromium-profile").start()
    try:
        _log_in(browser, ui_stack)
        browser.goto(f"{ui_stack.url}/plugin/llm-batches")
        # The UI shows the plugin's page in a frame of its own origin; wait for both runs' rows.
        browser.wait_for(f"{FRAME}?.body?.dataset.ready === '1'", what="the LLM batches page to load")
        gated, gated_rows, _ = _show(browser, GATES_DAG_ID, ["ui_gated_run"])
        flagged = browser.evaluate(f"{FRAME}.querySelector('#steps .warn')?.title")
        text, rows, points = _show(browser, DAG_ID, [RUN_ID, FAILING_RUN_ID])
        strokes = browser.evaluate(
            f"[...{FRAME}.querySelectorAll('#trend polyline')].map((p) => p.getAttribute('stroke'))"
        )
        frame_src = str(browser.evaluate("document.querySelector('iframe').src"))
        time.sleep(1.0)  # let the last repaint land before the screenshot
        shot = browser.screenshot(tmp_path / "ui-llm-batches.png")
    finally:
        browser.stop()
    assert frame_src == f"{ui_stack.url}/llm-batches/" and RUN_ID in text and FAILING_RUN_ID in text
    assert "100.0%" in text and "invalid_request: " in text and "$0." in text
    assert (gated_rows, rows, points) == (1, 2, 4), text  # the trend: two lines of two runs
    # The cost's dashed line is drawn after (over) the success rate's solid one: where the two
    # coincide, as they do when cost follows successes, the cost line still shows.
    assert strokes == ["#3182ce", "#dd6b20"]
    assert "min_success_rate (warn)" in gated and "max_batch_age (warn)" in gated
    assert flagged.startswith("success rate ") and "below min_success_rate 95.0%" in flagged
    assert shot.stat().st_size > 20_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):  # refresh the docs' picture on purpose only
        shutil.copy(shot, DOCS_SCREENSHOT)
