"""The connection forms the UI draws for this package's connection types (Airflow 3.1 to 3.3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import json, warnings
warnings.simplefilter("error", DeprecationWarning)  # 3.2+ must not fall back to the deprecated hook methods
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
forms = {}
for meta in HookMetaService.hook_meta_data():
    if meta.connection_type.startswith("llm_batch_"):
        forms[meta.connection_type] = {
            "hook_name": meta.hook_name,
            "standard": meta.standard_fields.model_dump(exclude_none=True) if meta.standard_fields else {},
            "extra": {name: field["schema"].get("title") for name, field in (meta.extra_fields or {}).items()},
        }
print(json.dumps(forms))
"""


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """What the API server sends the UI for the connection forms, computed in a fresh process."""
    home = tmp_path_factory.mktemp("airflow-home")
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={"AIRFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
    )
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_connection_type_has_a_named_form(forms):
    assert {"llm_batch_openai", "llm_batch_anthropic", "llm_batch_gemini"} <= set(forms)
    assert forms["llm_batch_openai"]["hook_name"] == "LLM Batch: OpenAI"


@pytest.mark.parametrize("conn_type", ["llm_batch_openai", "llm_batch_anthropic", "llm_batch_gemini"])
def test_the_key_and_base_url_are_labelled_and_unused_fields_hidden(forms, conn_type):
    standard = forms[conn_type]["standard"]
    assert standard["password"]["title"] == "API Key" and standard["password"]["placeholder"]
    assert standard["host"]["title"] == "Base URL" and "emulator" in standard["host"]["placeholder"]
    assert all(standard[name]["hidden"] for name in ("login", "port", "url_schema"))
    assert forms[conn_type]["extra"]["work_dir"] == "Default work dir"


def test_openai_asks_for_organization_and_project(forms):
    extra = forms["llm_batch_openai"]["extra"]
    assert (extra["organization"], extra["project"]) == ("Organization ID", "Project ID")


def test_vertex_asks_for_project_and_location(forms):
    extra = forms["llm_batch_vertex"]["extra"]
    assert (extra["project"], extra["location"]) == ("Google Cloud project", "Location")
    assert forms["llm_batch_vertex"]["standard"]["password"]["title"] == "Access token (optional)"


def test_an_openai_compatible_host_says_what_it_supports(forms):
    form = forms["llm_batch_openai_compatible"]
    assert form["hook_name"] == "LLM Batch: OpenAI-compatible host"
    assert (form["extra"]["metadata"], form["extra"]["endpoints"]) == ("Keeps batch metadata", "Endpoints served")
    assert form["standard"]["host"]["title"] == "Base URL" and "/v1" in form["standard"]["host"]["placeholder"]


def test_azure_openai_asks_for_the_api_version_and_the_authentication(forms):
    form = forms["llm_batch_azure_openai"]
    assert form["hook_name"] == "LLM Batch: Azure OpenAI"
    assert (form["extra"]["api_version"], form["extra"]["auth"]) == ("API version", "Authentication")
    assert (
        form["standard"]["host"]["title"] == "Endpoint"
        and "openai.azure.com" in form["standard"]["host"]["placeholder"]
    )
    assert form["standard"]["password"]["title"] == "API key or Entra ID token"
