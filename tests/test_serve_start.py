"""A clean `billing-gateway serve` start, as a developer sees it in a terminal: the banner
and a few readable lines, nothing in JSON, and no warning, error or traceback.

The server runs under a pseudo-terminal (so it logs in its text format, as it does for a
person), on a fresh data directory (a first start: initdb for the embedded PostgreSQL,
migrations, the sandbox seeded), with the embedded defaults: no DATABASE_URL, no Stripe key.
It is watched for a few seconds past readiness, since the sandbox delivers its start-up
events once the gateway is ready, then stopped with SIGTERM as Ctrl-C or a supervisor would."""

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from gateway.cli import _banner
from gateway.settings import Settings
from tests.served import CONSOLE_SCRIPT, REPO_ROOT, free_port

# Guards against a hang, never measures of speed.
START_PATIENCE_SECONDS = 120.0
STOP_PATIENCE_SECONDS = 60.0
# Past readiness: the sandbox's start-up deliveries and the worker applying them.
SETTLE_SECONDS = 4.0
MAX_LINES = 15
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TROUBLE = re.compile(r"traceback|warn|error|exception|critical|fatal|fail", re.IGNORECASE)


class Terminal:
    """A pseudo-terminal whose output is collected by a thread until the last writer closes."""

    def __init__(self) -> None:
        self.primary, self.secondary = pty.openpty()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start_reading(self) -> None:
        os.close(self.secondary)  # the child holds it now: EOF comes when its side is closed
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:  # EIO: every process on the terminal's side is gone
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def close(self, timeout: float) -> None:
        self._reader.join(timeout)
        os.close(self.primary)

    def text(self) -> str:
        return ANSI.sub("", b"".join(self._chunks).decode(errors="replace")).replace("\r", "")


def _environment(data_dir: Path, port: int) -> dict[str, str]:
    """The shell's environment without any of the gateway's settings, then the development
    defaults on a fresh data directory and a free port."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in settings}
    env.update(
        BILLING_ENV="development",
        BILLING_DATA_DIR=str(data_dir),
        HOST="127.0.0.1",
        PORT=str(port),
        TERM=env.get("TERM") or "xterm",
    )
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes], terminal: Terminal) -> None:
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while True:
        assert process.poll() is None, f"serve exited with {process.returncode}:\n{terminal.text()}"
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"serve was never ready:\n{terminal.text()}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_PATIENCE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict | list)
    except ValueError:
        return False


def test_a_clean_serve_start_prints_the_banner_and_a_few_readable_lines():
    root = REPO_ROOT / ".billing" / "serve-start"
    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="serve-", dir=root))
    port = free_port()
    terminal = Terminal()
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "serve"],
        env=_environment(data_dir, port),
        cwd=REPO_ROOT,
        stdin=terminal.secondary,
        stdout=terminal.secondary,
        stderr=terminal.secondary,
        start_new_session=True,  # its own session: the test run's Ctrl-C is not its
    )
    try:
        terminal.start_reading()
        _wait_ready(f"http://127.0.0.1:{port}/readyz", process, terminal)
        time.sleep(SETTLE_SECONDS)
        assert process.poll() is None, terminal.text()
    finally:
        returncode = _stop(process)
        terminal.close(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)

    output = terminal.text()
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    assert returncode == 0, output
    banner = [
        line.rstrip()
        for line in _banner(
            Settings(billing_env="development", stripe_api_key=None), "127.0.0.1", port
        ).splitlines()
        if line.strip()
    ]
    assert banner and any(lines[i : i + len(banner)] == banner for i in range(len(lines))), (
        f"no banner in:\n{output}"
    )
    assert len(lines) < MAX_LINES, f"{len(lines)} lines:\n{output}"
    assert not [line for line in lines if _is_json(line)], f"JSON lines in:\n{output}"
    troubled = [line for line in lines if TROUBLE.search(line)]
    assert not troubled, f"warnings, errors or tracebacks: {troubled}\n{output}"
