"""Benchmarks of the four hot paths and one end-to-end run: ``make bench`` (``python -m bench``).

Each benchmark runs in a fresh subprocess (so its peak memory is its own) and prints every figure
beside a reference measured in the same run, on the same machine, so the ratio holds on a noisy
machine where absolute numbers drift. See ``docs/performance.md`` for what each one measures.
"""
