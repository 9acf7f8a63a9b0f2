"""The provider-neutral core.

Rule of this package: never import Airflow or a provider SDK here. Everything in ``batch/`` is
plain Python, so it is unit-testable without Airflow and cheap to import. Backends
(``batch/backends/``) import their SDK inside the methods that need it.
"""
