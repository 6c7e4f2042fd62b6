"""A robot server app served from a background thread on loopback, for tests."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI


class ServerThread:
    """Serve an app from a background thread on loopback (tests, benches, notebooks)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="robot-server", daemon=True)
        self.host = host

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start serving; returns once the socket is bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("robot server did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        """The bound port (useful with port=0)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """http://host:port."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Shut down gracefully (runs the app's shutdown, which stops the backend)."""
        self._server.should_exit = True
        self._thread.join(timeout=10.0)
