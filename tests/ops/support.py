"""Helpers for the operations tests: an httpx transport into the in-process app that can fail on
purpose, and the registry run as a real server process (loopback only, bounded waits)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.ops.log_audit import AUDIT

START_TIMEOUT = 120.0
COMMAND_TIMEOUT = 300.0


class ViaApp(httpx.BaseTransport):
    """Sends the client's requests to the in-process app. ``fail_before(n)`` makes the next ``n``
    requests fail as if the registry were down; ``lose_answer_of(path)`` lets the next request to
    ``path`` through and then fails as if the connection broke before the answer came back."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.down = 0
        self.lose_next: str | None = None
        self.requests: list[tuple[str, str, bytes]] = []
        self.on_request: Callable[[httpx.Request], None] | None = None

    def fail_before(self, n: int) -> None:
        self.down = n

    def lose_answer_of(self, path: str) -> None:
        self.lose_next = path

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.requests.append((request.method, request.url.path, body))
        if self.on_request is not None:
            self.on_request(request)
        if self.down > 0:
            self.down -= 1
            raise httpx.ConnectError("connection refused", request=request)
        response = self.client.request(
            request.method,
            request.url.path,
            params=request.url.params,
            content=body,
            headers=dict(request.headers),
        )
        if self.lose_next == request.url.path:
            self.lose_next = None
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(workdir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTERYTRACE_")}
    env.update(
        BATTERYTRACE_DATABASE_URL=database_url,
        BATTERYTRACE_ENV="development",
        BATTERYTRACE_SIGNING_KEY=str(workdir / "log.key"),
        BATTERYTRACE_LOG_ORIGIN="ops.test/log",
        PYTHONUNBUFFERED="1",
    )
    return env


def batterytrace(
    args: list[str], env: dict[str, str], cwd: Path, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the ``batterytrace`` command in a child process."""
    return subprocess.run(
        [_exe(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
        **kw,
    )


def _exe() -> str:
    return str(Path(sys.executable).with_name("batterytrace"))


class Server:
    """``batterytrace serve --no-demo`` on a free loopback port; standard error kept in a file."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"server-{self.starts}.stderr"

    def start(self) -> None:
        assert self.proc is None
        self.starts += 1
        with (
            open(self.stderr_path, "wb") as errf,
            open(self.workdir / f"server-{self.starts}.stdout", "wb") as outf,
        ):
            self.proc = subprocess.Popen(
                [_exe(), "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=outf,
                stderr=errf,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the server exited with {self.proc.returncode}:\n{self.stderr_path.read_text()}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"the server did not answer within {START_TIMEOUT} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing, as in a crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for n in range(1, self.starts + 1):
            for stream in ("stderr", "stdout"):
                lines += (self.workdir / f"server-{n}.{stream}").read_text(encoding="utf-8").splitlines()
        return [line for line in lines if line.strip()]

    def check_logs(self) -> int:
        """Every line the server wrote is JSON and holds no secret; returns how many lines were
        request lines."""
        requests = 0
        for line in self.log_lines():
            problems = AUDIT.check_line(line)
            assert not problems, f"server log line {problems}: {line[:300]}"
            if json.loads(line).get("logger") == "batterytrace.request":
                requests += 1
        return requests
