"""Serving with several workers: the shared listening socket has TCP_NODELAY (no Nagle delay)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import uvicorn.supervisors

from flowbureau.service import server


def test_the_workers_share_a_listening_socket_with_nodelay(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeSupervisor:
        def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
            seen["workers"] = config.workers
            seen["factory"] = (config.app, config.factory)
            seen["nodelay"] = [
                s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets
            ]
            for s in sockets:
                s.close()

        def run(self) -> None:
            seen["ran"] = True

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", FakeSupervisor)
    server.serve(host="127.0.0.1", port=0, workers=2, log_level="warning")
    assert seen == {
        "workers": 2,
        "factory": (server.APP, True),
        "nodelay": [1],
        "ran": True,
    }


def test_uvicorn_itself_binds_without_nodelay() -> None:
    """Why serve() sets the option: uvicorn's own socket for workers lacks it."""
    sock = uvicorn.Config(server.APP, factory=True, host="127.0.0.1", port=0).bind_socket()
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    finally:
        sock.close()
