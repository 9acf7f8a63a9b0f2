"""The dashboard's FastAPI app: the page and its JSON API, behind Airflow's own authentication.

Every API route depends on Airflow's ``get_user`` (the UI's session cookie or a Bearer token);
the steps of a DAG also on ``requires_access_dag(GET, XCOM)``, the check Airflow's own XCom
endpoints make, so a user who may not read a DAG's XCom gets 403 and no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from airflow_llm_batch.batch.dashboard_rows import is_summary, step_rows
from airflow_llm_batch.plugins.dashboard_page import PAGE

DEFAULT_RUNS = 14  # two weeks of nightly runs
MAX_RUNS = 200


def create_app() -> FastAPI:
    app = FastAPI(title="LLM batches", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE  # no data in it: the page asks the API below, as the signed-in user

    @app.get("/api/dags")
    def dags(user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        """The DAGs this user may read that have LLM batch summaries."""
        allowed = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
        # One value per task (its latest run's), not every run's: enough to tell a Results or
        # final task from the rest, and cheap on a metadata DB with years of XCom.
        latest: Sequence[Any] = session.execute(
            select(XComModel.dag_id, XComModel.task_id, func.max(XComModel.dag_run_id))
            .where(XComModel.key == "return_value", XComModel.dag_id.in_(allowed))
            .group_by(XComModel.dag_id, XComModel.task_id)
        ).all()  # typed here: Airflow 3.1's session type leaves the rows untyped
        found: set[str] = set()
        for dag_id, task_id, dag_run_id in latest:
            if dag_id in found:
                continue
            value = session.scalar(
                select(XComModel.value)
                .where(
                    XComModel.dag_id == dag_id,
                    XComModel.task_id == task_id,
                    XComModel.dag_run_id == dag_run_id,
                    XComModel.key == "return_value",
                )
                .limit(1)
            )
            if is_summary(_value(value)):
                found.add(dag_id)
        return {"dag_ids": sorted(found)}

    @app.get("/api/dags/{dag_id}/steps", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.XCOM))])
    def steps(dag_id: str, session: SessionDep, runs: int = DEFAULT_RUNS) -> dict[str, Any]:
        """The last ``runs`` runs of a DAG: one row per run and step, newest first."""
        from airflow_llm_batch.links import console_url

        recent = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(max(1, min(runs, MAX_RUNS)))
        ).all()
        by_run = {run.run_id: run for run in recent}
        entries = session.execute(
            select(XComModel.run_id, XComModel.task_id, XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.key == "return_value", XComModel.run_id.in_(list(by_run))
            )
        )
        rows = step_rows((run_id, task_id, _value(value)) for run_id, task_id, value in entries)
        for row in rows:
            run = by_run[row["run_id"]]
            row.update(_run_fields(run))
            row["batches"] = [{"id": b, "url": console_url(str(row["provider"]), b)} for b in row.pop("batch_ids")]
        shown = {row["run_id"] for row in rows}
        # Runs without a summary yet: their progress, as the tasks' states.
        going = [{"run_id": run.run_id, **_run_fields(run), "tasks": _task_states(run)} for run in recent]
        order = {run.run_id: index for index, run in enumerate(recent)}
        rows.sort(key=lambda row: (order[row["run_id"]], row["step"]))
        return {"dag_id": dag_id, "steps": rows, "runs_without_summary": [g for g in going if g["run_id"] not in shown]}

    return app


def _value(stored: Any) -> Any:
    class _Row:  # ``deserialize_value`` reads ``.value`` of a row
        value = stored

    try:
        return XComModel.deserialize_value(_Row)
    except Exception:  # another task's value this view cannot read is not its business
        return None


def _run_fields(run: Any) -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "run_state": str(getattr(run.state, "value", run.state)),
        "logical_date": iso(run.logical_date or run.run_after),
        "start_date": iso(run.start_date),
        "end_date": iso(run.end_date),
    }


def _task_states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.task_instances}
