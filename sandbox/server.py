"""Run the sandbox on a loopback port: in-process for tests and `serve`, or on its own."""

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from sandbox.app import create_sandbox_app
from sandbox.delivery import Deliverer
from sandbox.store import Store


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class SandboxServer:
    """A sandbox listening on 127.0.0.1 (port 0: any free port) inside the running loop."""

    port: int = 0
    store: Store = field(default_factory=Store)
    state_file: Path | None = None
    retry_delays: tuple[float, ...] | None = None
    # Webhooks wait for `deliverer.open()`: the receiver is not listening yet.
    hold_deliveries: bool = False
    deliverer: Deliverer | None = None
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "SandboxServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Without it each keep-alive response waits ~40 ms for a delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.deliverer = Deliverer(self.store)
        if self.retry_delays is not None:
            self.deliverer.retry_delays = self.retry_delays
        app = create_sandbox_app(
            self.store,
            deliverer=self.deliverer,
            state_file=self.state_file,
            hold_deliveries=self.hold_deliveries,
        )
        # log_config=None: uvicorn must not reconfigure the embedding process's logging.
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on")
        self._server = EmbeddedServer(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
