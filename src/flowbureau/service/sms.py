"""Sending SMS: one small interface, three backends chosen by ``FLOWBUREAU_SMS_BACKEND``.

Backends:
- ``console`` (default): prints ``SMS to <phone>: <text>`` on standard output (development).
- ``file:PATH``: appends one JSON line ``{"phone", "text", "sent_at"}`` per message to PATH
  (tests and demos read codes from it). Each line is written with one ``write`` on a file
  opened for appending, so concurrent writers never interleave lines.
- ``http://...`` / ``https://...``: POSTs ``{"phone", "text"}`` as JSON to the gateway, with
  HTTP basic credentials from ``FLOWBUREAU_SERVICE__SMS_HTTP_USERNAME`` / ``_PASSWORD``.
  A transport failure or a non-2xx answer raises :class:`DeliveryError`.

Production refuses ``console`` and ``file:`` (see :func:`flowbureau.service.app.create_app`):
they would leave sign-in codes in logs or files.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from flowbureau.errors import ConfigurationError, FlowbureauError
from flowbureau.service.settings import ServiceSettings

__all__ = [
    "ConsoleSender",
    "DeliveryError",
    "FileSender",
    "HttpGatewaySender",
    "SmsSender",
    "make_sms_sender",
]


class DeliveryError(FlowbureauError):
    """A message could not be handed to its gateway; nothing was recorded as sent."""


class SmsSender(Protocol):
    """Delivers one text message to one phone (E.164)."""

    def send(self, phone: str, text: str) -> None:
        """Send ``text`` to ``phone`` or raise :class:`DeliveryError`."""


class ConsoleSender:
    """Prints messages on standard output."""

    def send(self, phone: str, text: str) -> None:
        """Print the message."""
        print(f"SMS to {phone}: {text}", flush=True)


class FileSender:
    """Appends one JSON line per message to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, phone: str, text: str) -> None:
        """Append ``{"phone", "text", "sent_at"}`` as one line."""
        line = json.dumps(
            {"phone": phone, "text": text, "sent_at": datetime.now(UTC).isoformat()},
            ensure_ascii=False,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        except OSError as exc:
            raise DeliveryError(f"cannot append the SMS to {self.path}: {exc}") from exc


class HttpGatewaySender:
    """POSTs messages as JSON to an HTTP SMS gateway."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        auth: Any = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.Client(auth=auth, timeout=timeout_seconds, transport=transport)

    def send(self, phone: str, text: str) -> None:
        """POST ``{"phone", "text"}``; raise :class:`DeliveryError` unless the answer is 2xx."""
        try:
            response = self._client.post(self.url, json={"phone": phone, "text": text})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS gateway {self.url} unreachable: {exc}") from exc
        if not response.is_success:
            raise DeliveryError(
                f"SMS gateway {self.url} refused the message: HTTP {response.status_code}"
            )


def make_sms_sender(
    backend: str, settings: ServiceSettings
) -> ConsoleSender | FileSender | HttpGatewaySender:
    """Build the sender named by ``backend`` (``console``, ``file:PATH`` or an http(s) URL)."""
    if backend == "console":
        return ConsoleSender()
    if backend.startswith("file:"):
        path = backend.removeprefix("file:")
        if not path:
            raise ConfigurationError("FLOWBUREAU_SMS_BACKEND=file: needs a path (file:PATH)")
        return FileSender(Path(path))
    if backend.startswith(("http://", "https://")):
        password = settings.sms_http_password
        return HttpGatewaySender(
            backend,
            username=settings.sms_http_username,
            password=None if password is None else password.get_secret_value(),
            timeout_seconds=settings.sms_http_timeout_seconds,
        )
    raise ConfigurationError(
        f"unknown FLOWBUREAU_SMS_BACKEND {backend!r}: use console, file:PATH or an http(s) URL"
    )
