"""Serving the dashboard from inside another program: uvicorn on a background thread.

``graphile-py dashboard`` runs uvicorn in the foreground. To show the dashboard from a
process that does something else (a worker, a web app, a test), start it on a thread:

>>> with BackgroundServer(create_app(utils), port=0) as server:  # doctest: +SKIP
...     print(server.url)
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from graphile_py.errors import GraphileError

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Run an ASGI app with uvicorn on a daemon thread until :meth:`stop`.

    ``port=0`` picks a free port; :attr:`port` and :attr:`url` give the one chosen once
    :meth:`start` has returned.
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, server_header=False, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; return once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, name="graphile-py-dashboard-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn sets .started once it listens; it offers no event to wait on.
        while not self._server.started and time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise GraphileError(f"the dashboard server could not start on {self.url}")
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise GraphileError(f"the dashboard server did not start on {self.url} in time")
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down (running its lifespan's end) and wait for it."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
