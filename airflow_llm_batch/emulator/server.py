"""`Emulator`: run the emulator in a background thread and drive it from Python.

The handle and the HTTP app share one `EmulatorState`, so a test can change the scenario or read
the ledger directly, without HTTP, while the code under test talks to the server with the real
SDK clients.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from airflow_llm_batch.emulator.app import create_app
from airflow_llm_batch.emulator.scenario import Scenario
from airflow_llm_batch.emulator.state import EmulatorState

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
START_TIMEOUT_SECONDS = 10.0


def bind_local_socket(host: str, port: int) -> socket.socket:
    """A listening socket on a loopback address; the emulator never listens anywhere else."""
    if host not in LOCAL_HOSTS:
        raise ValueError(f"the emulator binds only to {', '.join(LOCAL_HOSTS)}, not {host!r}")
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1" if host == "localhost" else host, port))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Emulator:
    """A running emulator and the in-process handle on its state.

    :param scenario: the scenario to start with; `reset` comes back to it (default: `Scenario()`).

    ``with Emulator() as emu:`` starts on a free port and stops on exit.
    """

    def __init__(self, scenario: Scenario | None = None) -> None:
        self.state = EmulatorState(scenario)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        """Serve on ``host:port`` (0 picks a free port) from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        sock = bind_local_socket(host, port)
        # log_config=None: uvicorn must not reconfigure the logging of the process it is embedded in.
        config = uvicorn.Config(
            create_app(self.state), log_config=None, log_level="warning", lifespan="off", access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="llm-batch-emulator", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not server.started:
            sock.close()
            raise RuntimeError("the emulator did not start; see the uvicorn log above")
        self._server, self._thread, self._url = server, thread, url_of(sock)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the server thread (the state stays readable)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_SECONDS)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the root of the control routes and every provider prefix."""
        if self._url is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` and ``AsyncOpenAI`` (it includes ``/v1``)."""
        return f"{self.url}/openai/v1"

    @property
    def azure_endpoint(self) -> str:
        """The Azure OpenAI resource endpoint (``azure_endpoint``; the v1 path is ``{it}/openai/v1/``)."""
        return f"{self.url}/azure"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (no ``/v1``; served once emulator/anthropic exists)."""
        return f"{self.url}/anthropic"

    @property
    def gemini_base_url(self) -> str:
        """``HttpOptions(base_url=...)`` for ``google.genai`` (served once emulator/gemini exists)."""
        return f"{self.url}/gemini"

    @property
    def bigquery_url(self) -> str:
        """``client_options={"api_endpoint": ...}`` for ``google.cloud.bigquery.Client``."""
        return f"{self.url}/bigquery"

    @property
    def vertex_base_url(self) -> str:
        """``HttpOptions(base_url=...)`` for ``genai.Client(vertexai=True, ...)``."""
        return f"{self.url}/vertex"

    @property
    def aws_endpoint_url(self) -> str:
        """``endpoint_url`` for boto3's ``bedrock`` and ``s3`` clients (one endpoint for both)."""
        return f"{self.url}/aws"

    @property
    def scenario(self) -> Scenario:
        return self.state.scenario

    def set_scenario(self, **fields: Any) -> Scenario:
        """Replace the scenario: the given fields, defaults for the rest. Returns the new scenario."""
        scenario = Scenario.from_dict(fields)
        self.state.set_scenario(scenario)
        return scenario

    def update_scenario(self, **fields: Any) -> Scenario:
        """Change some fields of the current scenario, keep the others."""
        with self.state.lock:
            scenario = self.state.scenario.updated(**fields)
            self.state.set_scenario(scenario)
        return scenario

    def reset(self) -> None:
        """Forget all batches, files, ledger entries and requests; restore the start scenario."""
        self.state.reset()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for every batch, without waiting."""
        self.state.advance(seconds)

    def ledger(self) -> dict[str, Any]:
        """The ledger as served at ``/_emulator/ledger`` (batches caught up with the clock first)."""
        return self.state.ledger_snapshot()

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        """The provider requests received so far, oldest first."""
        return self.state.request_log(provider)

    def __enter__(self) -> Emulator:
        return self if self._server is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
