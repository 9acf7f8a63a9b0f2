"""What every benchmark shares: rows of the table, peak memory, timing, and the emulator process."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


@dataclass
class Row:
    """One line of the table.

    :param value: the figure measured, in ``unit``.
    :param reference: what it is compared with, measured in the same run (``None``: nothing).
    :param ratio: ``value / reference`` unless the benchmark says otherwise.
    :param target: the goal, in words (``">= 150,000"``); ``met`` says whether it was reached.
    """

    figure: str
    value: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.reference:
            self.ratio = self.value / self.reference


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as elapsed: ...`` then ``elapsed[0]`` holds the wall seconds and ``elapsed[1]``
    the CPU seconds of this process (every thread): on a shared machine the wall time is mostly
    the other processes' doing, the CPU time much less."""
    box: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    try:
        yield box
    finally:
        box.extend((time.perf_counter() - started, time.process_time() - cpu))


def benchmark_args(description: str, add: Callable[[argparse.ArgumentParser], None] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, help="write the rows here (the runner reads them)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    if add is not None:
        add(parser)
    return parser.parse_args()


def scratch_root() -> str | None:
    """Where scratch files go: memory (``/dev/shm``) where there is one, so that the kernel writing
    back gigabytes of earlier runs' files does not slow down whichever loop is being timed."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def scratch(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="llm-batch-bench-", dir=scratch_root()) as folder:
        yield Path(folder)


def emit(rows: list[Row], path: Path | None) -> None:
    """Hand the rows to the runner (a JSON file), or print them when run on its own."""
    data = [asdict(row) for row in rows]
    if path is not None:
        path.write_text(json.dumps(data))
        return
    for row in data:
        print(json.dumps(row))


def run_child(module: str, work: Path, result_name: str, *args: str) -> Any:
    """Run ``python -m module --work WORK ARGS`` in a fresh process; return the JSON it left in WORK."""
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", module, "--work", str(work), *args]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return json.loads((work / result_name).read_text())


def rows_for(name: str, things: str, runs: list[dict[str, Any]], rate_target: int) -> list[Row]:
    """Throughput against the bare loop at the biggest size, and peak memory at both sizes."""
    runs = sorted(runs, key=lambda run: run["items"])
    small, big = runs[0], runs[-1]
    count = big.get("count", big["items"])  # what the loops went through (result lines, items)
    rate, bare_rate = count / big["seconds"], count / big["bare_seconds"]
    times_bare = big["seconds"] / big["bare_seconds"]
    rows = [
        Row(
            f"{name} {big['items']:,} {things}: throughput",
            rate,
            f"{things}/s",
            bare_rate,
            "bare loop, same input",
            ratio=times_bare,
            target=f">= {rate_target:,}/s; <= 3x bare loop time",
            met=rate >= rate_target and times_bare <= 3,
            note="; ".join(
                f"{run['items']:,}: {run.get('count', run['items']) / run['seconds']:,.0f}/s, "
                f"{run['seconds'] / run['bare_seconds']:.1f}x"
                for run in runs
            )
            + (f"; {big['note']}" if big.get("note") else ""),
        )
    ]
    if len(runs) > 1:
        growth = big["peak_mb"] / small["peak_mb"]
        rows.append(
            Row(
                f"{name} {big['items']:,} {things}: peak memory",
                big["peak_mb"],
                "MB",
                small["peak_mb"],
                f"peak at {small['items']:,} {things}",
                ratio=growth,
                target="<= 300 MB; flat (<= 1.1x)",
                met=big["peak_mb"] <= 300 and growth <= 1.1,
                note="resident set of the whole benchmark process (Python, pyarrow, the pass)",
            )
        )
    return rows


class EmulatorProcess:
    """The emulator in a process of its own, so its work never counts against what is measured.

    :param completion_seconds: how long each batch takes from create to ``completed``.
    :param extra_args: more emulator command-line switches (``--queue-quota openai,concurrent_batches=3``).
    """

    def __init__(self, folder: Path, completion_seconds: float, extra_args: tuple[str, ...] = ()) -> None:
        self._port_file = folder / "emulator.port"
        self._port_file.unlink(missing_ok=True)
        self._log = (folder / "emulator.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "airflow_llm_batch.emulator",
            "--port",
            "0",
            "--port-file",
            str(self._port_file),
            "--completion-seconds",
            str(completion_seconds),
            *extra_args,
        ]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start; see {folder / 'emulator.log'}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{int(self._port_file.read_text())}"
        self.openai_base_url = f"{self.url}/openai/v1"

    def requests(self, provider: str = "openai") -> list[dict[str, Any]]:
        import httpx2

        return list(httpx2.get(f"{self.url}/_emulator/requests", params={"provider": provider}, timeout=60).json())

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator has used so far (from /proc; Linux only)."""
        with open(f"/proc/{self.process.pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
