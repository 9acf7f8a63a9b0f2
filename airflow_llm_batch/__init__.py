"""airflow-llm-batch: LLM work through the providers' batch APIs, as three ordinary Airflow tasks.

``LLMBatchSubmitOperator`` -> ``LLMBatchCompletionSensor`` (deferrable) -> ``LLMBatchResultsOperator``

The names are loaded on first use, so ``import airflow_llm_batch`` stays cheap, and no provider
SDK is imported until a task runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "LLMBatchSubmitOperator": "airflow_llm_batch.operators.submit",
    "LLMBatchCompletionSensor": "airflow_llm_batch.sensors.completion",
    "LLMBatchResultsOperator": "airflow_llm_batch.operators.results",
    "LLMBatchConsolidateOperator": "airflow_llm_batch.operators.consolidate",
    "llm_batch_step": "airflow_llm_batch.task_group",
    "LLMBatchCompletionTrigger": "airflow_llm_batch.triggers.completion",
    "LLMBatchHook": "airflow_llm_batch.hooks.llm_batch",
    "LLMBatchError": "airflow_llm_batch.exceptions",
    "InvalidInputError": "airflow_llm_batch.exceptions",
    "BatchFailedError": "airflow_llm_batch.exceptions",
    "BatchTimeoutError": "airflow_llm_batch.exceptions",
    "ConfigurationError": "airflow_llm_batch.exceptions",
    "BudgetExceededError": "airflow_llm_batch.exceptions",
    "BigQuerySource": "airflow_llm_batch.io.bigquery",
    "BigQuerySink": "airflow_llm_batch.io.bigquery_sink",
}

__all__ = [
    "BatchFailedError",
    "BatchTimeoutError",
    "BigQuerySink",
    "BigQuerySource",
    "BudgetExceededError",
    "ConfigurationError",
    "InvalidInputError",
    "LLMBatchCompletionSensor",
    "LLMBatchCompletionTrigger",
    "LLMBatchConsolidateOperator",
    "LLMBatchError",
    "LLMBatchHook",
    "LLMBatchResultsOperator",
    "LLMBatchSubmitOperator",
    "llm_batch_step",
]

if TYPE_CHECKING:
    from airflow_llm_batch.exceptions import (
        BatchFailedError,
        BatchTimeoutError,
        BudgetExceededError,
        ConfigurationError,
        InvalidInputError,
        LLMBatchError,
    )
    from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
    from airflow_llm_batch.io.bigquery import BigQuerySource
    from airflow_llm_batch.io.bigquery_sink import BigQuerySink
    from airflow_llm_batch.operators.consolidate import LLMBatchConsolidateOperator
    from airflow_llm_batch.operators.results import LLMBatchResultsOperator
    from airflow_llm_batch.operators.submit import LLMBatchSubmitOperator
    from airflow_llm_batch.sensors.completion import LLMBatchCompletionSensor
    from airflow_llm_batch.task_group import llm_batch_step
    from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'airflow_llm_batch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
