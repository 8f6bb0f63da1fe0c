"""Running the HTTP application: bind, serve from a thread, stop.

Uvicorn runs on its own thread with its own event loop, in `tandem serve` and in
the app's engine process alike; the thread that owns the Engine is elsewhere and
only sees Jobs.  The socket is bound here, before uvicorn starts, so a port already
in use is a one-line TandemError at once (uvicorn would log it and exit the thread),
and port 0 picks a free port (the tests use that).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from engine.api.jobs import Backend
from engine.errors import TandemError

if TYPE_CHECKING:
    from engine.api.http import Api

log = logging.getLogger("tandem.api")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
GRACE_S = 5.0  # how long a stop waits for open responses (their generations are cancelled first)


def require_stack() -> None:
    """The web stack is the optional `server` extra: say how to get it."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise TandemError(f"the local server needs {exc.name}: install Tandem with the server extra "
                          "(pip install -e '.[server]'; `make run` and `make test` do)") from None


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise TandemError(f"port must be between 0 and 65535, not {port}")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        sock = socket.create_server(address[:2], family=family, backlog=64)
    except OSError as exc:
        raise TandemError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def is_loopback(sock: socket.socket) -> bool:
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


class HttpServer:
    """The API on host:port, served from a background thread until `stop()`."""

    def __init__(self, backend: Backend, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 api_key: str | None = None) -> None:
        self.backend = backend
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.api: Api | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return self.api is not None and self.api.loopback

    def warning(self) -> str | None:
        """What the user must know when other computers can reach the server."""
        if self.api is None or self.loopback:
            return None
        key = "requests need the API key" if self.api_key else "there is NO API key: anyone who can reach it may use it"
        return (f"the local server listens on {self.host}:{self.port}, so other computers on the network can "
                f"reach it ({key})")

    def start(self, timeout: float = 15.0) -> str:
        """Bind and serve; returns the base URL once requests are accepted."""
        require_stack()
        import uvicorn
        import uvicorn.lifespan.off  # uvicorn loads it by name: imported here, PyInstaller bundles it
        from uvicorn.protocols.http.h11_impl import H11Protocol

        from engine.api.http import Api

        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.api = Api(self.backend, self.api_key, loopback=is_loopback(sock))
        config = uvicorn.Config(self.api.asgi, log_config=None, access_log=False, lifespan="off", http=H11Protocol,
                                loop="asyncio", ws="none", server_header=False,
                                timeout_graceful_shutdown=int(GRACE_S))
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=self._run, args=(server, sock), name="tandem-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise TandemError(f"the local server did not start on {self.url}")
            time.sleep(0.01)
        log.info("serving the OpenAI-compatible API on %s/v1", self.url)
        warning = self.warning()
        if warning:
            log.warning("%s", warning)
        return self.url

    @staticmethod
    def _run(server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except Exception:  # a crash here must not take the engine down with it
            log.exception("the local server stopped")
        finally:
            sock.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = GRACE_S + 5) -> None:
        """Cancel what is generating, let responses end, close the socket."""
        if self._server is None:
            return
        if self.api is not None:
            self.api.cancel_all()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        log.info("the local server on %s stopped", self.url)
