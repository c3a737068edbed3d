"""Helpers to run ``chatsessions serve`` as a real process that tests can kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

FULL = os.environ.get("CHATSESSIONS_RESILIENCE_FULL") == "1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(database_url: str, *args: str) -> str:
    """Run a CLI command against the database and return its stdout."""
    env = {**os.environ, "CHATSESSIONS_DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "chatsessions.cli", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return done.stdout.decode()


def create_user(database_url: str) -> tuple[str, str]:
    """A user created through the CLI: (userId, apiKey)."""
    data = orjson.loads(cli(database_url, "users", "create", "--name", "resilience", "--json"))
    return str(data["userId"]), str(data["apiKey"])


class Server:
    """A ``chatsessions serve`` subprocess on a free port."""

    def __init__(self, database_url: str, log_dir: Path, **env: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "CHATSESSIONS_DATABASE_URL": database_url,
            "CHATSESSIONS_AUTH_FAILURE_LIMIT": "100000",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        """Where the server listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until /healthz answers."""
        self.starts += 1
        log = open(self.log_dir / f"serve-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatsessions.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        """SIGKILL the server (no chance to clean up)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)
