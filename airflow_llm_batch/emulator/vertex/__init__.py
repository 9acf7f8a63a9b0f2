"""Emulated Vertex AI batchPredictionJobs with BigQuery input and output."""
