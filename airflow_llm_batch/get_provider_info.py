"""What Airflow's providers manager reads about this package (entry point ``apache_airflow_provider``).

Kept as plain data: the providers manager imports it in every Airflow process.
"""

from __future__ import annotations

from typing import Any

# The connection forms of the UI, declared as data: Airflow 3.2+ reads ``conn-fields`` and
# ``ui-field-behaviour`` from here without importing the hooks; on Airflow 3.1 the hooks'
# ``get_connection_form_widgets`` / ``get_ui_field_behaviour`` build the same form from this dict.
# Extra fields are stored under their own names in the connection's extra JSON.
_WORK_DIR_FIELD = {
    "label": "Default work dir",
    "description": "Where request and result files go when the operator names no work_dir: a local "
    "folder shared by the workers, or s3://bucket/prefix, gs://bucket/prefix.",
    "schema": {"type": ["string", "null"]},
}
_API_KEY_FORM = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"password": "API Key", "host": "Base URL"},
}
CONNECTION_FORMS: dict[str, dict[str, Any]] = {
    "llm_batch_openai": {
        "hook-name": "LLM Batch: OpenAI",
        "conn-fields": {
            "organization": {
                "label": "Organization ID",
                "description": "Optional: the OpenAI organization (org-...) to bill.",
                "schema": {"type": ["string", "null"]},
            },
            "project": {
                "label": "Project ID",
                "description": "Optional: the OpenAI project (proj_...) to bill.",
                "schema": {"type": ["string", "null"]},
            },
            "work_dir": _WORK_DIR_FIELD,
        },
        "ui-field-behaviour": {
            **_API_KEY_FORM,
            "placeholders": {
                "password": "sk-...",
                "host": "empty for https://api.openai.com/v1; the emulator: http://127.0.0.1:8765/openai/v1",
            },
        },
    },
    "llm_batch_openai_compatible": {
        "hook-name": "LLM Batch: OpenAI-compatible host",
        "conn-fields": {
            "metadata": {
                "label": "Keeps batch metadata",
                "description": "true if the host stores batch metadata and lists it back: batches are then "
                "tagged with the job key and found again after a lost create response. Default false.",
                "schema": {"type": ["boolean", "null"], "default": False},
            },
            "endpoints": {
                "label": "Endpoints served",
                "description": "Comma-separated: chat, responses, embeddings. Empty: any.",
                "schema": {"type": ["string", "null"]},
            },
            "work_dir": _WORK_DIR_FIELD,
        },
        "ui-field-behaviour": {
            **_API_KEY_FORM,
            "placeholders": {
                "password": "the host's API key",
                "host": "the host's base URL ending in /v1, e.g. https://api.groq.com/openai/v1",
                "extra": '{"limits": {"max_requests": 10000}}',
            },
        },
    },
    "llm_batch_azure_openai": {
        "hook-name": "LLM Batch: Azure OpenAI",
        "conn-fields": {
            "api_version": {
                "label": "API version",
                "description": "v1 (the /openai/v1/ path, default) or an Azure API version such as 2025-04-01-preview.",
                "schema": {"type": ["string", "null"], "default": "v1"},
            },
            "auth": {
                "label": "Authentication",
                "description": "api_key (the password is a key) or entra_id (the password is a Microsoft Entra ID "
                "token; empty: DefaultAzureCredential from azure-identity).",
                "schema": {"type": ["string", "null"], "default": "api_key"},
            },
            "work_dir": _WORK_DIR_FIELD,
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "login"],
            "relabeling": {"password": "API key or Entra ID token", "host": "Endpoint"},
            "placeholders": {
                "password": "a key of the resource, or an Entra ID access token",
                "host": "https://<resource>.openai.azure.com; the emulator: http://127.0.0.1:8765/azure",
            },
        },
    },
    "llm_batch_anthropic": {
        "hook-name": "LLM Batch: Anthropic",
        "conn-fields": {"work_dir": _WORK_DIR_FIELD},
        "ui-field-behaviour": {
            **_API_KEY_FORM,
            "placeholders": {
                "password": "sk-ant-...",
                "host": "empty for https://api.anthropic.com; the emulator: http://127.0.0.1:8765/anthropic",
            },
        },
    },
    "llm_batch_gemini": {
        "hook-name": "LLM Batch: Gemini",
        "conn-fields": {"work_dir": _WORK_DIR_FIELD},
        "ui-field-behaviour": {
            **_API_KEY_FORM,
            "placeholders": {
                "password": "AIza... (a Gemini API key from Google AI Studio)",
                "host": "empty for https://generativelanguage.googleapis.com; the emulator: http://127.0.0.1:8765/gemini",
            },
        },
    },
    "llm_batch_vertex": {
        "hook-name": "LLM Batch: Vertex AI",
        "conn-fields": {
            "project": {
                "label": "Google Cloud project",
                "description": "The project that runs the Vertex AI batch prediction jobs.",
                "schema": {"type": ["string", "null"]},
            },
            "location": {
                "label": "Location",
                "description": "The Vertex AI region of the jobs, e.g. us-central1.",
                "schema": {"type": ["string", "null"], "default": "us-central1"},
            },
            "bigquery_dataset": {
                "label": "BigQuery dataset",
                "description": "Where the request and output tables of the jobs go (default llm_batch).",
                "schema": {"type": ["string", "null"]},
            },
            "work_dir": _WORK_DIR_FIELD,
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "login"],
            "relabeling": {"password": "Access token (optional)", "host": "Base URL"},
            "placeholders": {
                "password": "empty: Application Default Credentials",
                "host": "empty for the Vertex AI endpoint of the location; the emulator: http://127.0.0.1:8765/vertex",
            },
        },
    },
    "llm_batch_bedrock": {
        "hook-name": "LLM Batch: Amazon Bedrock",
        "conn-fields": {
            "region_name": {
                "label": "AWS Region",
                "description": "The Region of the Bedrock batch jobs and of the bucket, e.g. us-east-1.",
                "schema": {"type": ["string", "null"], "default": "us-east-1"},
            },
            "bedrock_role_arn": {
                "label": "Bedrock service role ARN",
                "description": "The IAM role Bedrock assumes to read the input records and write the outputs "
                "(s3:GetObject, s3:PutObject, s3:ListBucket on the bucket).",
                "schema": {"type": ["string", "null"]},
            },
            "bedrock_s3_uri": {
                "label": "S3 prefix for records",
                "description": "s3://bucket/prefix: input records go under <it>/input, outputs under <it>/output.",
                "schema": {"type": ["string", "null"]},
            },
            "endpoint_url": {
                "label": "Endpoint URL",
                "description": "Empty for AWS; one endpoint for Bedrock and S3 (the emulator: http://127.0.0.1:8765/aws).",
                "schema": {"type": ["string", "null"]},
            },
            "work_dir": _WORK_DIR_FIELD,
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "host"],
            "relabeling": {"login": "AWS Access Key ID", "password": "AWS Secret Access Key"},
            "placeholders": {
                "login": "empty: boto3's default credentials (instance or pod role, environment)",
                "password": "empty with an empty login",
            },
        },
    },
}


def connection_form(conn_type: str) -> dict[str, Any]:
    """The UI form of one of this package's connection types (empty for others)."""
    return CONNECTION_FORMS.get(conn_type, {})


# Longer than most: it is one literal, the provider metadata Airflow reads.
def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-llm-batch",
        "name": "LLM Batch",
        "description": "LLM work through the providers' batch APIs (OpenAI, Azure OpenAI, OpenAI-compatible "
        "hosts, Anthropic, Gemini, Vertex AI, Amazon Bedrock) at half price.",
        "versions": ["0.2.0", "0.1.0"],
        "integrations": [
            {
                "integration-name": "LLM Batch",
                "external-doc-url": "https://pypi.org/project/airflow-llm-batch/",
                "tags": ["ai"],
            }
        ],
        "operators": [
            {
                "integration-name": "LLM Batch",
                "python-modules": [
                    "airflow_llm_batch.operators.submit",
                    "airflow_llm_batch.operators.results",
                    "airflow_llm_batch.operators.consolidate",
                ],
            }
        ],
        "sensors": [{"integration-name": "LLM Batch", "python-modules": ["airflow_llm_batch.sensors.completion"]}],
        "hooks": [{"integration-name": "LLM Batch", "python-modules": ["airflow_llm_batch.hooks.llm_batch"]}],
        "triggers": [{"integration-name": "LLM Batch", "python-modules": ["airflow_llm_batch.triggers.completion"]}],
        "connection-types": [
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchOpenAIHook",
                "connection-type": "llm_batch_openai",
                **CONNECTION_FORMS["llm_batch_openai"],
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchOpenAICompatibleHook",
                "connection-type": "llm_batch_openai_compatible",
                **CONNECTION_FORMS["llm_batch_openai_compatible"],
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchAzureOpenAIHook",
                "connection-type": "llm_batch_azure_openai",
                **CONNECTION_FORMS["llm_batch_azure_openai"],
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchAnthropicHook",
                "connection-type": "llm_batch_anthropic",
                **CONNECTION_FORMS["llm_batch_anthropic"],
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchGeminiHook",
                "connection-type": "llm_batch_gemini",
                **CONNECTION_FORMS["llm_batch_gemini"],
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchVertexHook",
                "connection-type": "llm_batch_vertex",
                **CONNECTION_FORMS["llm_batch_vertex"],
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchBedrockHook",
                "connection-type": "llm_batch_bedrock",
                **CONNECTION_FORMS["llm_batch_bedrock"],
            },
        ],
        "task-decorators": [
            {"name": "llm_batch", "class-name": "airflow_llm_batch.decorators.llm_batch.llm_batch_task"}
        ],
        "extra-links": ["airflow_llm_batch.links.LLMBatchConsoleLink", "airflow_llm_batch.links.LLMBatchListLink"],
        "config": {
            "llm_batch": {
                "description": "Defaults of the airflow-llm-batch provider.",
                "options": {
                    "work_dir": {
                        "description": "Where request and result files live when neither the operator "
                        "nor the connection names a work dir. Any ObjectStoragePath URI.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://my-bucket/llm-batch",
                        "default": None,
                    },
                    "local_work_dir_shared": {
                        "description": "Say that a local work dir is a mount every worker sees (NFS, EFS, a "
                        "ReadWriteMany volume). Without it, a local work dir under an executor whose workers "
                        "share no disk (Celery, Kubernetes, Edge) fails the submit task before any API call.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                    "price_table": {
                        "description": "Batch prices per model that override the shipped table, in USD per "
                        "1M tokens: inline JSON or the path of a JSON file, "
                        '{"model": {"input": 0.2, "output": 0.8, "cached_input": 0.05}}.',
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"gpt-4.1-mini": {"input": 0.2, "output": 0.8, "cached_input": 0.05}}',
                        "default": None,
                    },
                    "poll_interval": {
                        "description": "Seconds between status polls of the completion sensor.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "60",
                        "default": "60",
                    },
                },
            }
        },
    }
