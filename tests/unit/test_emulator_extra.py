"""Without the `emulator` extra a user's pytest still runs; the emulator fixture says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Blocks one of the emulator's server dependencies, as an install without the extra lacks it.
CONFTEST = "import sys\nsys.modules['duckdb'] = None\n"
TESTS = """
def test_plain():
    assert 1 + 1 == 2

def test_uses_the_emulator(llm_batch_emulator):
    pass
"""


def test_missing_emulator_dependencies_fail_only_the_fixture_with_the_install_command(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_user.py").write_text(TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "1 passed, 1 error" in result.stdout, result.stdout
    assert "duckdb is missing): pip install 'airflow-llm-batch[emulator]'" in result.stdout
    assert "During handling" not in result.stdout
