"""Extra links: from the Submit and Sensor tasks to the provider's console page of the batch."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

CONSOLE_URL_XCOM_KEY = "llm_batch_console_url"


class LLMBatchConsoleLink(BaseOperatorLink):
    """ "Batch console": the provider's page of the job's first batch (pushed by the task at run time)."""

    name = "Batch console"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key=CONSOLE_URL_XCOM_KEY)
        return str(value) if value else ""


def push_console_url(context: Any, provider: str, batch_ids: list[str]) -> None:
    """Record the console URL of the first batch so the link resolves without calling the provider."""
    from airflow_llm_batch.batch.backends import backend_class

    template = backend_class(provider).console_url_template
    if template and batch_ids:
        context["ti"].xcom_push(key=CONSOLE_URL_XCOM_KEY, value=template.format(batch_id=batch_ids[0]))
