"""Run real DAGs against the bundled emulator: a throwaway Airflow home on SQLite.

Used by ``make demo`` and by this package's end-to-end tests; users can use it for their own
DAG tests. Each DAG runs through ``airflow dags test`` in a subprocess, so it exercises real
Airflow: the DAG file is parsed and serialized, the sensor defers and its trigger runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class AirflowSandbox:
    """An ``AIRFLOW_HOME`` of its own with connections given as ``AIRFLOW_CONN_*`` variables.

    :param home: the folder to use as ``AIRFLOW_HOME`` (created; its SQLite DB lives there).
    :param dags_folder: the folder Airflow parses DAG files from.
    :param env: more environment variables for every Airflow command.
    """

    def __init__(self, home: Path, dags_folder: Path, env: Mapping[str, str] | None = None) -> None:
        self.home = Path(home)
        self.dags_folder = Path(dags_folder)
        self.home.mkdir(parents=True, exist_ok=True)
        self.work_dir = self.home / "llm_batch"
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LLM_BATCH__WORK_DIR": str(self.work_dir),
            "AIRFLOW__LLM_BATCH__POLL_INTERVAL": "1",
            # Compiled bytecode makes every airflow command 2-3x faster (see airflow-notes.md).
            "PYTHONDONTWRITEBYTECODE": "",
            **dict(env or {}),
        }
        self.env.pop("PYTHONDONTWRITEBYTECODE")

    def set_connection(
        self,
        conn_id: str,
        conn_type: str,
        host: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        login: str | None = None,
    ) -> None:
        """Define a connection the way deployments often do: an ``AIRFLOW_CONN_<ID>`` JSON variable."""
        value = {"conn_type": conn_type, "host": host, "login": login, "password": password, "extra": dict(extra or {})}
        self.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({k: v for k, v in value.items() if v is not None})

    def airflow(
        self, *args: str, timeout: float = 600, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command in this sandbox; output is captured as text.

        :param env: extra environment variables for this command only.
        """
        command = [str(Path(sys.executable).parent / "airflow"), *args]
        result = subprocess.run(
            command,
            env={**self.env, **dict(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.home),
        )
        if check and result.returncode != 0:
            raise AirflowCommandError(command, result)
        return result

    def migrate(self) -> None:
        self.airflow("db", "migrate", timeout=300)

    def dags_test(
        self,
        dag_id: str,
        logical_date: str = "2026-11-21",
        check: bool = True,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
        conf: Mapping[str, Any] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the whole DAG once in one process (deferrable tasks' triggers run inline).

        :param env: extra environment variables for this run (the DAG file is parsed with them).
        :param conf: the run's configuration (``params``), as ``airflow dags test -c`` takes it.
        """
        extra = ("-c", json.dumps(dict(conf))) if conf else ()
        return self.airflow("dags", "test", dag_id, logical_date, *extra, timeout=timeout, check=check, env=env)


class AirflowCommandError(RuntimeError):
    def __init__(self, command: list[str], result: subprocess.CompletedProcess[str]) -> None:
        tail = "\n".join((result.stdout + "\n" + result.stderr).strip().splitlines()[-60:])
        super().__init__(f"{' '.join(command[1:])} exited {result.returncode}; last lines:\n{tail}")
        self.result = result
