"""Emulated Azure OpenAI batches: OpenAI's Files and Batch API under ``/azure`` (``urls``)."""
