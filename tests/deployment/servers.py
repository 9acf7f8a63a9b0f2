"""The real servers of a production-like deployment, started on 127.0.0.1 on free ports in temp dirs.

- ``MotoS3``: moto's S3 server (``moto_server``, PyPI ``moto[server]``), the work dir's object store;
- ``Postgres``: Debian's PostgreSQL, Airflow's metadata DB and Celery's result backend;
- ``Redis``: Debian's redis-server, Celery's broker.

``make services`` installs the Debian packages (CI runs it before the tests). Each server is
stopped by ``stop()``; its data lives in a temp dir removed with it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

AWS_KEY = "moto-test-key"
AWS_SECRET = "moto-test-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}) before it listened on port {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def missing_service(binary: str) -> str:
    return f"{binary} is not installed: run `make services` (installs Debian's postgresql and redis-server)"


class MotoS3:
    """moto's S3 server with one bucket; its request log (one line per HTTP call) kept in ``log``."""

    def __init__(self, bucket: str = "llm-batch-test") -> None:
        self.bucket = bucket
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="moto-s3-"))
        self.log = self.dir / "requests.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        binary = str(Path(sys.executable).parent / "moto_server")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.port, self.process, "moto_server")
        request = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")  # CreateBucket
        urllib.request.urlopen(request, timeout=30).close()
        return self

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def connection(self) -> dict[str, Any]:
        """An ``aws`` Airflow connection to this server (the ``AIRFLOW_CONN_*`` JSON form)."""
        return {
            "conn_type": "aws",
            "login": AWS_KEY,
            "password": AWS_SECRET,
            "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
        }

    def filesystem(self) -> Any:
        """An s3fs filesystem on this server for the tests' own reads, with no listing cache."""
        import s3fs

        return s3fs.S3FileSystem(
            key=AWS_KEY,
            secret=AWS_SECRET,
            endpoint_url=self.endpoint,
            client_kwargs={"region_name": REGION},
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def path(self, key: str = "") -> Any:
        """``s3://bucket/key`` as a path the tests read with (``/``, ``read_text``, ``glob``)."""
        from upath import UPath

        return UPath(
            f"s3://{self.bucket}/{key}",
            key=AWS_KEY,
            secret=AWS_SECRET,
            endpoint_url=self.endpoint,
            client_kwargs={"region_name": REGION},
            use_listings_cache=False,
        )

    def requests(self) -> list[str]:
        """The request lines moto logged so far (``GET /bucket?list-type=2&... HTTP/1.1``)."""
        return [
            line.split('"')[1] for line in self.log.read_text(errors="replace").splitlines() if line.count('"') >= 2
        ]


class Postgres:
    """A PostgreSQL cluster of its own in a temp dir (trust auth, loopback only), with database ``airflow``.

    PostgreSQL refuses to run as root: as root (CI), the cluster belongs to the ``postgres`` user
    that Debian's package creates.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="llm-batch-pg-"))
        self.data = self.dir / "data"
        self.bin = self._bin_dir()

    @staticmethod
    def _bin_dir() -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError(missing_service("PostgreSQL"))
        return Path(found[-1]).parent

    def _as_owner(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o755)  # the owner and the other users' clients reach the socket dir
        run = {"check": True, "capture_output": True, "timeout": 180}
        subprocess.run(
            self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", "airflow", "-A", "trust"), **run
        )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c full_page_writes=off"
        log = str(self.dir / "server.log")
        subprocess.run(
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start"),
            **run,
        )
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow"], **run
        )
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """redis-server on loopback with no persistence, its working dir a temp dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="llm-batch-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(missing_service("redis-server"))
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        with (self.dir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(command, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, "redis-server")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)
