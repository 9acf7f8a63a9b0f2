"""Sources of items and sinks of result rows: lists, JSONL / Parquet / CSV files (BigQuery later).

No Airflow imports: the operators hand in ``ObjectStoragePath`` objects, tests hand in ``pathlib``.
"""
