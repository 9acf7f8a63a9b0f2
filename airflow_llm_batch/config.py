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


def price_table(overrides: Any = None) -> Any:
    """The shipped batch prices, then ``[llm_batch] price_table``, then an operator's ``prices=``."""
    from airflow_llm_batch.batch.pricing import PriceTable, parse_price_setting

    table = PriceTable.shipped()
    configured = airflow_conf().get("llm_batch", "price_table", fallback=None)
    if configured:
        table = table.with_overrides(parse_price_setting(str(configured)), source="[llm_batch] price_table")
    return table.with_overrides(overrides, source="the operator's prices=")
