"""``make ui``: the Airflow UI with the example DAGs, against the bundled emulator.

Starts the emulator and ``airflow standalone`` (API server and UI, scheduler, DAG processor,
triggerer) with ``dags_examples/`` loaded and the connections ``llm_batch_openai``,
``llm_batch_anthropic``, ``llm_batch_gemini``, ``llm_batch_vertex``, ``llm_batch_azure_openai``,
``llm_batch_openai_compatible``, ``llm_batch_bedrock`` and ``google_cloud_default``
pointing at the emulator, prints the URL and the login, and runs
until Ctrl-C, then stops both. Everything listens on 127.0.0.1 only; the Airflow home (SQLite DB,
logs, work dir) is ``.ui/airflow-home`` and is kept between runs.

``UiStack`` is also what the browser test (``tests/ui``) starts, in a temporary home on free ports.

Environment: ``UI_PORT`` (default 8080) and ``EMULATOR_PORT`` (default 8765); ``UI_FRESH=1``
starts from an empty Airflow home.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_llm_batch.emulator import Emulator, Scenario

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 240.0
GCP_PROJECT = "demo-project"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class UiStack:
    """The emulator plus ``airflow standalone`` in one Airflow home, on 127.0.0.1.

    :param home: the ``AIRFLOW_HOME`` (created).
    :param dags_folder: the folder of DAG files to load.
    :param api_port: the port of the API server and UI.
    :param emulator: the emulator to point the connections at (started by :meth:`start` if needed).
    :param env: more environment variables for Airflow (they win over the defaults here).
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        api_port: int,
        emulator: Emulator,
        env: Mapping[str, str] | None = None,
        api_key: str = "emulator-key",
    ) -> None:
        self.home = Path(home)
        self.dags_folder = Path(dags_folder)
        self.api_port = api_port
        self.emulator = emulator
        self.api_key = api_key
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "standalone.log"
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def password(self) -> str:
        return str(json.loads(self.password_file.read_text())["admin"])

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def environment(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            # standalone starts its components as `airflow ...`: the venv's bin must come first.
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # A handful of worker processes is plenty here (the default starts 32).
            "AIRFLOW__CORE__PARALLELISM": "4",
            # The connection form's Test button (and POST /api/v2/connections/test).
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__LLM_BATCH__WORK_DIR": str(self.home / "llm_batch"),
            "AIRFLOW__LLM_BATCH__POLL_INTERVAL": "2",
            # Bedrock's connection points at the emulator: botocore must never ask the machine for credentials.
            "AWS_EC2_METADATA_DISABLED": "true",
            **self.connection_env(),
            **self.extra_env,
        }
        # Compiled bytecode makes every airflow process start 2-3x faster (see airflow-notes.md).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def connection_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables: every provider's connection, and Google Cloud's, at the emulator."""
        emulator = self.emulator
        google = {"project": GCP_PROJECT, "bigquery_endpoint": emulator.bigquery_url}
        connections: dict[str, dict[str, Any]] = {
            f"llm_batch_{provider}": {"conn_type": f"llm_batch_{provider}", "host": url, "password": self.api_key}
            for provider, url in (
                ("openai", emulator.openai_base_url),
                ("anthropic", emulator.anthropic_base_url),
                ("gemini", emulator.gemini_base_url),
            )
        }
        connections["llm_batch_vertex"] = {
            "conn_type": "llm_batch_vertex",
            "host": emulator.vertex_base_url,
            "password": self.api_key,
            "extra": {**google, "location": "us-central1", "bigquery_dataset": "llm_batch"},
        }
        # Azure OpenAI and an OpenAI-compatible host: the emulated resource, and the emulated OpenAI.
        connections["llm_batch_azure_openai"] = {
            "conn_type": "llm_batch_azure_openai",
            "host": emulator.azure_endpoint,
            "password": self.api_key,
        }
        connections["llm_batch_openai_compatible"] = {
            "conn_type": "llm_batch_openai_compatible",
            "host": emulator.openai_base_url,
            "password": self.api_key,
        }
        # Amazon Bedrock: the emulated AWS endpoint, dummy keys (the Test button lists one job). A DAG
        # run on it needs the bucket of bedrock_s3_uri created in the emulated S3 first (docs/platforms.md).
        connections["llm_batch_bedrock"] = {
            "conn_type": "llm_batch_bedrock",
            "login": "AKIAEMULATOR0000",
            "password": self.api_key,
            "extra": {
                "region_name": "us-east-1",
                "endpoint_url": emulator.aws_endpoint_url,
                "bedrock_role_arn": "arn:aws:iam::123456789012:role/bedrock-batch",
                "bedrock_s3_uri": "s3://llm-batch-records/llm-batch",
            },
        }
        connections["google_cloud_default"] = {
            "conn_type": "google_cloud_platform",
            "password": self.api_key,
            "extra": google,
        }
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(value) for conn_id, value in connections.items()}

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> UiStack:
        """Start ``airflow standalone`` and wait until the API answers and the login exists."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not port_is_free(self.api_port):
            raise RuntimeError(f"port {self.api_port} is in use; set UI_PORT to another port")
        self.process = launch(["standalone"], self.environment(), self.home, self.log_path)
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited ({self.process.returncode}); see {self.log_path}")
            if self.password_file.exists() and self._healthy():
                return
            time.sleep(1.0)
        raise RuntimeError(f"airflow standalone was not ready after {timeout:.0f}s; see {self.log_path}")

    def _healthy(self) -> bool:
        try:
            health = self.request("GET", "/api/v2/monitor/health", auth=False)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(name) or {}).get("status") == "healthy" for name in components)

    def stop(self) -> None:
        """Stop standalone and its components (their process group), then the emulator."""
        process, self.process = self.process, None
        if process is not None:
            signal_group(process.pid, signal.SIGTERM)
            end_group(process)
        self.emulator.stop()

    def token(self) -> str:
        """A bearer token for the REST API (``POST /auth/token`` with the generated admin login)."""
        if self._token is None:
            answer = self.request("POST", "/auth/token", {"username": "admin", "password": self.password}, auth=False)
            self._token = str(answer["access_token"])
        return self._token

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        """One REST call; returns the decoded JSON answer (raises ``urllib.error.HTTPError`` on 4xx/5xx)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
        return json.loads(payload) if payload else None


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # standalone runs in a session of its own (no Ctrl-C from the terminal): this script stops it,
    # on Ctrl-C and on SIGTERM alike.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    home = ROOT / ".ui" / "airflow-home"
    if os.environ.get("UI_FRESH"):
        shutil.rmtree(home, ignore_errors=True)
    api_port = int(os.environ.get("UI_PORT", "8080"))
    emulator_port = int(os.environ.get("EMULATOR_PORT", "8765"))
    if not port_is_free(emulator_port):
        emulator_port = free_port()
    emulator = Emulator(Scenario(completion_seconds=20.0)).start(port=emulator_port)
    print(f"Emulator listening on {emulator.url} (127.0.0.1 only)")
    stack = UiStack(home, ROOT / "dags_examples", api_port, emulator)
    print(f"Starting airflow standalone in {home} (log: {stack.log_path}); this takes 15-60 s ...")
    try:
        stack.start()
    except (RuntimeError, KeyboardInterrupt) as err:
        stack.stop()
        print(err, file=sys.stderr)
        return 1
    _print_ready(stack)
    try:
        while stack.process is not None and stack.process.poll() is None:
            time.sleep(1.0)
        print(f"airflow standalone exited; see {stack.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping airflow standalone and the emulator ...")
        return 0
    finally:
        stack.stop()


def _print_ready(stack: UiStack) -> None:
    print()
    print(f"Airflow UI:  {stack.url}")
    print(f"Login:       admin / {stack.password}   (from {stack.password_file})")
    print(f"Emulator:    {stack.emulator.url}   (every llm_batch_* connection and google_cloud_default point here)")
    print()
    print("Try it: open DAG nightly_ticket_triage, switch it on, press Trigger; open the run, then the")
    print("'wait' task's log for progress, its 'Batch console' link, and the 'results' task's XCom for")
    print("the cost summary. See docs/ui.md. Ctrl-C stops everything.")


def launch(args: list[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``airflow <args>`` in a session (process group) of its own, so that everything it starts can
    be signalled at once; its output is appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=dict(env),
            cwd=str(cwd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # every process of the group has ended already
        os.killpg(pgid, signum)


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (a container's init may never reap them)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) is in parentheses and may hold spaces: split after it.
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(group) == pgid and state != "Z":
            live.append(int(stat.parent.name))
    return live


def end_group(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """After SIGTERM: wait for the group's leader and the rest of its group (standalone exits
    before its API server and scheduler), then SIGKILL whatever is left."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while live_processes_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if live_processes_in_group(process.pid):
        signal_group(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
