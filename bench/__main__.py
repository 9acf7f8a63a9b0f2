"""``make bench``: run the seven benchmarks, each in a fresh process, and print one table.

    python -m bench                      # all seven, full sizes (about a quarter of an hour on 2 cores)
    python -m bench submit results       # some of them
    python -m bench --quick              # smaller sizes, for a quick look

Every figure is printed beside a reference measured in the same run on the same machine, so the
ratio holds where absolute numbers drift (a shared or throttled machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._harness import ROOT, run_child, scratch_root

BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (title, arguments, quick arguments)
    "parse": ("1. DAG parse cost", [], ["--runs", "5"]),
    "submit": ("2. Submit", [], ["--sizes", "50000,200000"]),
    "results": ("3. Results", [], ["--sizes", "50000,200000"]),
    "triggerer": ("4. Triggerer", [], ["--completion-seconds", "10", "--repeat", "1"]),
    "e2e": ("5. End to end", [], ["--items", "10000"]),
    "waves": ("6. Waves under a queue quota", [], ["--items", "100000", "--completion-seconds", "8"]),
    "reuse": ("7. Reuse across nights", [], ["--sizes", "50000,200000"]),
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{memory_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown memory"
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("apache-airflow", "orjson", "msgspec", "pyarrow", "openai")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {versions}"
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit.endswith("/s") or abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| figure | value | reference | ratio | target | met? |",
        "|---|---:|---|---:|---|:---:|",
    ]
    for row in rows:
        reference = _number(row["reference"], row["unit"])
        if row["reference"] is not None and row["reference_label"]:
            reference = f"{reference} ({row['reference_label']})"
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        lines.append(
            f"| {row['figure']} | {_number(row['value'], row['unit'])} | {reference} | {ratio} | "
            f"{row['target'] or '-'} | {met} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"which benchmarks: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (not the figures the targets are about)")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="llm-batch-bench-", dir=scratch_root()) as folder:
        for name in names:
            title, full, quick = BENCHMARKS[name]
            print(f"{title} ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            work = Path(folder) / name
            result = work / "rows.json"
            run_child(f"bench.{name}", work, "rows.json", "--json", str(result), *(quick if args.quick else full))
            rows.extend(_rows(result))
            print(f"{title}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    print(f"\nMachine: {machine()}")
    print(f"Run: python -m bench{' --quick' if args.quick else ''} {' '.join(args.names)}".rstrip())
    print(f"       in {elapsed / 60:.1f} min, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(table(rows))
    notes = [f"- {row['figure']}: {row['note']}" for row in rows if row["note"]]
    if notes:
        print("\nNotes:\n" + "\n".join(notes))
    targets = [row for row in rows if row["met"] is not None]
    print(f"\n{sum(row['met'] for row in targets)} of {len(targets)} targets met.")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "seconds": elapsed, "rows": rows}, indent=2))
    return 0


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text()))


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
