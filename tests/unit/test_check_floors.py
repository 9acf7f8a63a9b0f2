"""``scripts/check_floors.py`` (run by ``make test-oldest``) checks the floors ``.[dev]`` installs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from packaging.version import Version

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_floors.py"
spec = importlib.util.spec_from_file_location("check_floors", SCRIPT)
assert spec is not None and spec.loader is not None
check_floors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_floors)

PROJECT = {
    "name": "airflow-llm-batch",
    "dependencies": ["openai>=2.0", "apache-airflow>=3.1.0"],
    "optional-dependencies": {
        "emulator": ["duckdb>=1.3"],
        "s3": ["apache-airflow-providers-amazon[s3fs]>=9.6"],
        "gcs": ["gcsfs>=2023.10.0"],
        "dev": ["airflow-llm-batch[emulator]", "airflow-llm-batch[s3]", "pytest>=8", "celery>=5.5,<5.7"],
    },
}


def test_the_extras_dev_names_are_followed_and_the_others_left_out():
    checked, left_out = check_floors.installed_requirements(PROJECT)
    assert sorted(r.name for r in checked) == [
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "celery",
        "duckdb",
        "openai",
        "pytest",
    ]
    assert [r.name for r in left_out] == ["gcsfs"]


def test_the_floor_is_the_lower_bound_only():
    checked, _ = check_floors.installed_requirements(PROJECT)
    floors = {r.name: check_floors.floor_of(r) for r in checked}
    assert floors["celery"] == Version("5.5")
    assert floors["openai"] == Version("2.0.0")


def test_a_floor_above_or_below_the_installed_version_fails_the_check(monkeypatch, capsys):
    checked, _ = check_floors.installed_requirements(PROJECT)
    installed = {r.name: str(check_floors.floor_of(r) or "3.1.8") for r in checked}
    monkeypatch.setattr(check_floors.metadata, "version", lambda name: installed[name])
    assert check_floors.main(PROJECT) == 0
    installed["openai"] = "2.1.0"
    assert check_floors.main(PROJECT) == 1
    assert "openai: the floor is 2.0 but 2.1.0 was installed" in capsys.readouterr().out
