"""Extra links: each batch's console page, computed at run time and kept in XCom."""

from __future__ import annotations

from airflow_llm_batch.links import (
    BATCH_LIST_URL_XCOM_KEY,
    CONSOLE_URL_XCOM_KEY,
    CONSOLE_URLS_XCOM_KEY,
    LLMBatchConsoleLink,
    LLMBatchListLink,
    batch_list_url,
    console_url,
    push_console_url,
)


class FakeTaskInstance:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_openai_and_anthropic_batches_have_a_page_each():
    assert console_url("openai", "batch_abc") == "https://platform.openai.com/batches/batch_abc"
    assert (
        console_url("anthropic", "msgbatch_1") == "https://console.anthropic.com/workspaces/default/batches/msgbatch_1"
    )


def test_a_vertex_job_links_to_its_page_in_its_project_and_location():
    job = "projects/my-proj/locations/europe-west4/batchPredictionJobs/123"
    assert console_url("vertex", job) == (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/batch-predictions/123?project=my-proj"
    )
    assert (
        batch_list_url("vertex", [job])
        == "https://console.cloud.google.com/vertex-ai/batch-predictions?project=my-proj"
    )


def test_a_bedrock_job_links_to_the_batch_inference_page_of_its_region():
    job = "arn:aws:bedrock:eu-west-1:123456789012:model-invocation-job/abcdef123456"
    page = "https://eu-west-1.console.aws.amazon.com/bedrock/home?region=eu-west-1#/batch-inference"
    assert console_url("bedrock", job) == page and batch_list_url("bedrock", [job]) == page


def test_gemini_has_no_page_per_batch_so_its_link_opens_ai_studio_batches():
    assert console_url("gemini", "batches/abc") is None
    ti = FakeTaskInstance()
    push_console_url({"ti": ti}, "gemini", ["batches/abc"])
    assert ti.pushed[CONSOLE_URL_XCOM_KEY] == "https://aistudio.google.com/batches"
    assert ti.pushed[CONSOLE_URLS_XCOM_KEY] == [{"batch_id": "batches/abc", "url": None}]


def test_every_batch_url_is_pushed_and_the_first_one_backs_the_link():
    ti = FakeTaskInstance()
    push_console_url({"ti": ti}, "openai", ["batch_1", "batch_2"])
    assert ti.pushed[CONSOLE_URL_XCOM_KEY] == "https://platform.openai.com/batches/batch_1"
    assert ti.pushed[BATCH_LIST_URL_XCOM_KEY] == "https://platform.openai.com/batches"
    assert [page["url"] for page in ti.pushed[CONSOLE_URLS_XCOM_KEY]] == [
        "https://platform.openai.com/batches/batch_1",
        "https://platform.openai.com/batches/batch_2",
    ]


def test_the_links_resolve_to_what_the_task_computed_and_are_empty_before():
    class Task:
        pass

    task, ti = Task(), FakeTaskInstance()
    console, listing = LLMBatchConsoleLink(), LLMBatchListLink()
    assert console.get_link(task, ti_key=None) == ""  # e.g. a sensor's first leg, before any batch ended
    push_console_url({"ti": ti, "task": task}, "anthropic", ["msgbatch_9"])
    assert console.get_link(task, ti_key=None) == "https://console.anthropic.com/workspaces/default/batches/msgbatch_9"
    assert listing.get_link(task, ti_key=None) == "https://console.anthropic.com/workspaces/default/batches"
    assert (console.name, listing.name) == ("Batch console", "All batches")
    assert console.xcom_key != listing.xcom_key  # where Airflow 3 stores each resolved link for the UI
