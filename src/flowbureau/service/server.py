"""Serving the app with uvicorn: one process, or a supervisor and several worker processes.

Rules:
- :func:`serve` runs :func:`flowbureau.service.app.create_app` (as a factory, in each worker)
  exactly as ``uvicorn.run(..., factory=True, workers=N)`` does, with one difference: with
  more than one worker the shared listening socket gets ``TCP_NODELAY``.
- Why: with ``workers > 1`` uvicorn binds the socket itself as ``socket.socket(family)``
  (protocol number 0), and asyncio sets ``TCP_NODELAY`` on accepted connections only when the
  protocol reads ``IPPROTO_TCP``, so every worker's connections kept Nagle's algorithm. A
  response written as headers then body then waits for the client's delayed ACK: about 40 ms
  on every keep-alive request (measured: 48 ms p50 for ``/healthz`` with 2 workers against
  2.5 ms with 1). On Linux accepted sockets inherit the option from the listening socket.
- ``python -m flowbureau.service.server --port 8000 --workers 2`` serves the same way without
  the CLI's database preparation (``bench/api.py`` uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from collections.abc import Sequence

__all__ = ["APP", "serve"]

APP = "flowbureau.service.app:create_app"
"""The application factory every worker imports."""

_STARTUP_FAILURE = 3  # uvicorn's exit status when a single server fails to start


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    proxy_headers: bool = False,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve the API until interrupted (module rules)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        server_header=False,
        log_level=log_level,
        access_log=access_log,
    )
    if workers == 1:  # uvicorn binds with getaddrinfo's protocol: asyncio sets TCP_NODELAY
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            sys.exit(_STARTUP_FAILURE)
        return
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flowbureau.service.server``: serve with the given host, port and workers."""
    parser = argparse.ArgumentParser(description="Serve the flowbureau API with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=not args.no_access_log,
    )


if __name__ == "__main__":
    main()
