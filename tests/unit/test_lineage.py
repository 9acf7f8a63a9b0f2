"""OpenLineage dataset names of the Submit input and the Results output."""

from __future__ import annotations

import importlib.util

import pytest

from airflow_llm_batch.lineage import dataset_id, items_dataset_id, operator_lineage


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/data/tickets.jsonl", ("file", "/data/tickets.jsonl")),
        ("file:///data/tickets.jsonl", ("file", "/data/tickets.jsonl")),
        ("s3://exports/tickets/2026-01-01.jsonl", ("s3://exports", "tickets/2026-01-01.jsonl")),
        ("gs://bucket/a/b.parquet", ("gs://bucket", "a/b.parquet")),
        ("bq://proj.dataset.table", ("bigquery", "proj.dataset.table")),
    ],
)
def test_uris_map_to_openlineage_namespace_and_name(uri, expected):
    assert dataset_id(uri) == expected


def test_items_from_a_list_have_no_dataset_and_a_warehouse_source_names_its_table():
    class TableSource:
        table = "proj.support.tickets"

        def iter_items(self):
            return iter(())

    assert items_dataset_id([{"id": 1}]) is None
    assert items_dataset_id(TableSource()) == ("bigquery", "proj.support.tickets")
    assert items_dataset_id("s3://b/k.csv") == ("s3://b", "k.csv")


@pytest.mark.skipif(
    importlib.util.find_spec("airflow.providers.openlineage") is None,
    reason="the OpenLineage provider is not installed (the dev extra installs it)",
)
def test_operator_lineage_builds_openlineage_datasets():
    lineage = operator_lineage(inputs=[("file", "/in.jsonl")], outputs=[("s3://b", "out.jsonl")])
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/in.jsonl")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://b", "out.jsonl")]
