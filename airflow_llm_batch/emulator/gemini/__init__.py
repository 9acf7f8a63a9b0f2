"""The emulated Gemini Developer API: Batch, asyncBatchEmbedContent and the Files upload protocol."""
