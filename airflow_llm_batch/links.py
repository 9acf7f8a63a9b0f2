"""Extra links: from the Submit and Sensor tasks to the provider's console pages of their batches.

Airflow shows a fixed set of link buttons per task, so a job of several batches gets two:

- **Batch console**: the console page of the job's first batch (or, where the provider has no
  page per batch, its page listing batches);
- **All batches**: the provider's page listing the account's batches.

The console URL of *every* batch is logged by the task and pushed to XCom under
``llm_batch_console_urls`` (a list of ``{"batch_id", "url"}``). The URLs are computed when the
task runs, from the batch ids alone (no provider call, no secret). Airflow 3 resolves a task's
links in the worker right after the task and stores them in XCom for the UI; the links read the
URLs the task kept on its operator, so a deferred sensor's first leg (no batch has ended yet)
resolves to an empty link without an XCom lookup.

Per-batch pages: OpenAI ``platform.openai.com/batches/<id>``, Anthropic
``console.anthropic.com/workspaces/default/batches/<id>``, Vertex AI
``console.cloud.google.com/vertex-ai/locations/<location>/batch-predictions/<job>?project=<project>``.
The Gemini Developer API documents no page per batch: its link opens Google AI Studio's batch list.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from airflow.sdk import BaseOperatorLink

log = logging.getLogger(__name__)

CONSOLE_URL_XCOM_KEY = "llm_batch_console_url"
CONSOLE_URLS_XCOM_KEY = "llm_batch_console_urls"
BATCH_LIST_URL_XCOM_KEY = "llm_batch_list_url"

# The provider pages that list an account's batches.
BATCH_LIST_URLS = {
    "openai": "https://platform.openai.com/batches",
    "anthropic": "https://console.anthropic.com/workspaces/default/batches",
    "gemini": "https://aistudio.google.com/batches",
}
VERTEX_JOB_URL = (
    "https://console.cloud.google.com/vertex-ai/locations/{location}/batch-predictions/{job}?project={project}"
)
VERTEX_LIST_URL = "https://console.cloud.google.com/vertex-ai/batch-predictions?project={project}"
# Amazon Bedrock names a job by its ARN, which carries the Region; the console's batch inference
# page of that Region lists the jobs (a job's own page is reached from there).
BEDROCK_LIST_URL = "https://{region}.console.aws.amazon.com/bedrock/home?region={region}#/batch-inference"
_BEDROCK_JOB = re.compile(r"^arn:aws[a-z-]*:bedrock:(?P<region>[a-z0-9-]+):\d+:model-invocation-job/(?P<job>\w+)$")
# Vertex AI names a batch job by its full resource name.
_VERTEX_JOB = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/batchPredictionJobs/(?P<job>[^/]+)$"
)


# Where push_console_url keeps the URLs on the running operator, by XCom key.
_LINKS_ATTRIBUTE = "_llm_batch_link_urls"


class _RunTimeLink(BaseOperatorLink):
    """A link whose URL the task computed while it ran (and also pushed to XCom under ``url_xcom_key``)."""

    url_xcom_key = ""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        urls = getattr(operator, _LINKS_ATTRIBUTE, None) or {}
        return str(urls.get(self.url_xcom_key) or "")


class LLMBatchConsoleLink(_RunTimeLink):
    """ "Batch console": the provider's page of the job's first batch."""

    name = "Batch console"
    url_xcom_key = CONSOLE_URL_XCOM_KEY


class LLMBatchListLink(_RunTimeLink):
    """ "All batches": the provider's page listing the account's batches."""

    name = "All batches"
    url_xcom_key = BATCH_LIST_URL_XCOM_KEY


def console_url(provider: str, batch_id: str) -> str | None:
    """The provider's console page of one batch, or ``None`` where the provider has none."""
    from airflow_llm_batch.batch.backends import backend_class
    from airflow_llm_batch.exceptions import ConfigurationError

    match = _VERTEX_JOB.match(batch_id)
    if match:
        return VERTEX_JOB_URL.format(**match.groupdict())
    bedrock = _BEDROCK_JOB.match(batch_id)
    if bedrock:
        return BEDROCK_LIST_URL.format(region=bedrock["region"])
    try:
        template = backend_class(provider).console_url_template
    except ConfigurationError:
        return None
    return template.format(batch_id=batch_id) if template else None


def batch_list_url(provider: str, batch_ids: list[str]) -> str | None:
    """The provider's page listing batches (for Vertex AI: of the first job's project)."""
    for batch_id in batch_ids:
        match = _VERTEX_JOB.match(batch_id)
        if match:
            return VERTEX_LIST_URL.format(project=match["project"])
        bedrock = _BEDROCK_JOB.match(batch_id)
        if bedrock:
            return BEDROCK_LIST_URL.format(region=bedrock["region"])
    return BATCH_LIST_URLS.get(provider)


def push_console_url(context: Any, provider: str, batch_ids: list[str]) -> None:
    """Log every batch's console URL and push what the links read (no provider call, no secret).

    A link is never worth failing the task for: a problem here is logged and the links stay empty.
    """
    try:
        _push_console_urls(context, provider, batch_ids)
    except Exception as err:
        log.warning("Could not record the console links of %s (%s: %s)", batch_ids, type(err).__name__, err)


def _push_console_urls(context: Any, provider: str, batch_ids: list[str]) -> None:
    pages = [{"batch_id": batch_id, "url": console_url(provider, batch_id)} for batch_id in batch_ids]
    for page in pages:
        if page["url"]:
            log.info("Console of batch %s: %s", page["batch_id"], page["url"])
    list_url = batch_list_url(provider, batch_ids)
    first = next((page["url"] for page in pages if page["url"]), None) or list_url
    urls = {CONSOLE_URL_XCOM_KEY: first, BATCH_LIST_URL_XCOM_KEY: list_url}
    task = context.get("task")
    if task is not None:
        setattr(task, _LINKS_ATTRIBUTE, urls)
    ti = context["ti"]
    for key, value in (*urls.items(), (CONSOLE_URLS_XCOM_KEY, pages)):
        if value:
            ti.xcom_push(key=key, value=value)
