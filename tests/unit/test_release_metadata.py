"""One version everywhere a user or Airflow reads it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import airflow_llm_batch
from airflow_llm_batch.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]


def test_package_provider_info_and_changelog_name_the_same_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert airflow_llm_batch.__version__ == version
    assert get_provider_info()["versions"][0] == version
    assert f"## {version}\n" in (ROOT / "CHANGELOG.md").read_text()
