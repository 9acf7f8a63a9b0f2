"""Pre-flight check of request bodies before any API call (see ``docs/preflight.md``).

``sdk_types``: the installed SDKs' request types; ``models``: the dated model table and the rules
the types cannot express; ``check``: the per-job check that ``prepare.py`` asks once per template
and once per item. Plain Python, no Airflow; vendor SDKs are imported only when a check runs.
"""

from airflow_llm_batch.batch.preflight.check import Preflight, PreflightSettings

__all__ = ["Preflight", "PreflightSettings"]
