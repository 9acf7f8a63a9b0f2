"""Emulated Anthropic Message Batches API: ``models`` (state machine), ``lines`` (result lines),
``validation`` (create-time checks), ``responses`` (HTTP) and ``urls``."""
