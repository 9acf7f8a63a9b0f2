"""Check that every dependency floor in pyproject.toml is the version installed in this environment.

    python scripts/check_floors.py        # run by `make test-oldest`; exit 1 with each floor not installed

`make test-oldest` installs with uv's lowest-direct resolution, so each of our direct dependencies
should land exactly on its floor. When one does not (a dependency of another package, or a pin in
.ci/constraints-oldest.txt, lifts it), the oldest-line tests never run against that floor, and the
floor claims more than was tested: raise it to what was installed, or pin the other package lower.

Checked: the requirements of ``[project.dependencies]`` and of the extras ``dev`` installs (itself and
the extras it names). ``apache-airflow`` is checked too: the Makefile installs the oldest line's
release (``AIRFLOW_OLDEST``), which must be the floor. Requirements of other extras are listed as not
installed.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Requirements whose floor is not compared, with the reason (none today).
NOT_CHECKED: dict[str, str] = {}


def installed_requirements(project: dict) -> tuple[list[Requirement], list[Requirement]]:
    """The requirements ``.[dev]`` installs, and those of the extras it leaves out."""
    name = project["name"]
    extras = project.get("optional-dependencies", {})
    wanted, todo = set(), ["dev"]
    while todo:  # dev names other extras of this package (airflow-llm-batch[emulator]), and so on
        extra = todo.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for text in extras.get(extra, []):
            requirement = Requirement(text)
            if requirement.name == name:
                todo.extend(requirement.extras)
    chosen = [Requirement(text) for text in project["dependencies"]]
    chosen += [Requirement(text) for extra in sorted(wanted) for text in extras[extra]]
    left_out = [Requirement(text) for extra in sorted(set(extras) - wanted) for text in extras[extra]]
    own = [r for r in chosen + left_out if r.name == name]
    return [r for r in chosen if r not in own], [r for r in left_out if r not in own]


def floor_of(requirement: Requirement) -> Version | None:
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(floors) if floors else None


def main(project: dict | None = None) -> int:
    if project is None:
        project = tomllib.loads(PYPROJECT.read_text())["project"]
    checked, left_out = installed_requirements(project)
    breaches, compared = [], 0
    for requirement in checked:
        floor = floor_of(requirement)
        if requirement.name in NOT_CHECKED or floor is None:
            reason = NOT_CHECKED.get(requirement.name, "no >= floor")
            print(f"  {requirement.name}: not checked ({reason})")
            continue
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            breaches.append(f"{requirement.name}: not installed (reinstall the environment: `make clean`)")
            continue
        compared += 1
        mark = "ok" if installed == floor else "FLOOR NOT INSTALLED"
        print(f"  {requirement.name}: floor {floor}, installed {installed}  {mark}")
        if installed != floor:
            breaches.append(f"{requirement.name}: the floor is {floor} but {installed} was installed")
    for requirement in left_out:
        print(f"  {requirement.name}: not installed by the dev extra, floor not tested")
    if breaches:
        print("Floors the oldest line does not test (raise them, or pin what lifts them):", *breaches, sep="\n  ")
        return 1
    print(f"{compared} floors checked: each is the installed version.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
