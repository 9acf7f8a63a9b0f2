"""The ``[llm_batch]`` section of Airflow's configuration, read the same way on Airflow 3.1 to 3.3."""

from __future__ import annotations

import os
from typing import Any


def airflow_conf() -> Any:
    try:
        from airflow.sdk import conf  # type: ignore[attr-defined,unused-ignore]  # Airflow 3.2+
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf  # type: ignore[assignment,unused-ignore]
    return conf


def default_work_dir() -> str:
    """``[llm_batch] work_dir``, else ``$AIRFLOW_HOME/llm_batch``."""
    configured = airflow_conf().get("llm_batch", "work_dir", fallback=None)
    if configured:
        return str(configured)
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "llm_batch")


def default_poll_interval() -> float:
    return float(airflow_conf().getfloat("llm_batch", "poll_interval", fallback=60.0))
