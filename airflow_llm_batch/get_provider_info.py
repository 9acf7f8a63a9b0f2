"""What Airflow's providers manager reads about this package (entry point ``apache_airflow_provider``).

Kept as plain data: the providers manager imports it in every Airflow process.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-llm-batch",
        "name": "LLM Batch",
        "description": "LLM work through the providers' batch APIs (OpenAI, Anthropic, Gemini) at half price.",
        "versions": ["0.1.0"],
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
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchAnthropicHook",
                "connection-type": "llm_batch_anthropic",
            },
            {
                "hook-class-name": "airflow_llm_batch.hooks.llm_batch.LLMBatchGeminiHook",
                "connection-type": "llm_batch_gemini",
            },
        ],
        "extra-links": ["airflow_llm_batch.links.LLMBatchConsoleLink"],
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
