"""Emulated OpenAI Files and Batches API: ``models`` (state machine), ``responses`` (HTTP), ``urls``."""
