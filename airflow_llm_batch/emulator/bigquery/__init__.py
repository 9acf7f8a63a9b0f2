"""Emulated BigQuery REST API (the routes this package uses), backed by an in-memory DuckDB."""
