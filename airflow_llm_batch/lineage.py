"""OpenLineage datasets of the Submit and Results tasks, for the OpenLineage provider.

When ``apache-airflow-providers-openlineage`` is installed and configured, it calls the operators'
``get_openlineage_facets_on_complete``: Submit reports the items it read (a file, or a BigQuery
table) as its input, Results the results file it wrote as its output. Without the provider
nothing here is imported: the OpenLineage imports live inside :func:`operator_lineage`.

Dataset names follow the OpenLineage naming spec: ``file`` + ``/path`` for local files,
``s3://bucket`` / ``gs://bucket`` + the key for object stores, ``bigquery`` + ``project.dataset.table``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

# Object stores whose namespace is scheme://bucket and whose name is the key.
_BUCKET_SCHEMES = {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "wasbs", "az"}


def dataset_id(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of a file URI or path (``/data/x.jsonl``, ``s3://b/k``, ``bq://p.d.t``)."""
    if uri.startswith(("bq://", "bigquery://")):
        return "bigquery", uri.split("://", 1)[1].strip("/")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file", "local"):
        return "file", parts.path or uri
    if scheme in _BUCKET_SCHEMES:
        return f"{scheme}://{parts.netloc}", parts.path.lstrip("/")
    return f"{scheme}://{parts.netloc}", parts.path or "/"


def items_dataset_id(items: Any) -> tuple[str, str] | None:
    """The dataset the Submit task read its items from; ``None`` for a list of items (no dataset)."""
    if isinstance(items, str):
        return dataset_id(items)
    table = getattr(items, "table", None)  # a warehouse source object, e.g. a BigQuery table
    if isinstance(table, str) and table:
        return "bigquery", table.split("://", 1)[-1]
    return None


def operator_lineage(inputs: Iterable[tuple[str, str]] = (), outputs: Iterable[tuple[str, str]] = ()) -> Any:
    """An ``OperatorLineage`` with the given ``(namespace, name)`` datasets (needs the OpenLineage provider)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    try:
        from airflow.providers.common.compat.openlineage.facet import Dataset
    except ImportError:  # an older common-compat provider
        from openlineage.client.event_v2 import Dataset

    return OperatorLineage(
        inputs=[Dataset(namespace=namespace, name=name) for namespace, name in inputs],
        outputs=[Dataset(namespace=namespace, name=name) for namespace, name in outputs],
    )
