"""The "LLM batches" view: an Airflow plugin (Airflow 3.1+ interface) registered by the package.

A FastAPI app served by Airflow's API server under ``/llm-batches`` (a page and a JSON API), and an
external view in the UI's Browse menu that shows the page inside the UI. The API reads the step
summaries Airflow already stores (the Results and final tasks' XCom) through Airflow's models, and
answers only a user Airflow lets read the DAG's XCom (``docs/dashboard.md``).

Airflow imports this module wherever it loads plugins; the app (FastAPI, Airflow's API modules)
is built only when the API server asks for it, so nothing here adds to what DAG files import.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/llm-batches"


class _AppsOnFirstUse:
    """``fastapi_apps``, built when first read (only the API server reads it)."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: Any, owner: Any) -> list[dict[str, Any]]:
        if self._apps is None:
            from airflow_llm_batch.plugins.dashboard_app import create_app

            self._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "LLM batches"}]
        return self._apps


class LLMBatchDashboardPlugin(AirflowPlugin):
    name = "llm_batch_dashboard"
    fastapi_apps = _AppsOnFirstUse()  # type: ignore[assignment]
    external_views = [
        {
            "name": "LLM batches",
            "href": f"{URL_PREFIX}/",
            "url_route": "llm-batches",
            "destination": "nav",
            "category": "browse",
        }
    ]
