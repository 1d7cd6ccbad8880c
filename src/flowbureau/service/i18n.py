"""Message catalogs of the web console: Chinese (default) and English.

Rules:
- Every string the console shows comes from a catalog: ``flowbureau/service/messages/zh.toml``
  and ``en.toml``, nested TOML tables flattened to dotted keys (``nav.home``). Both catalogs
  hold exactly the same keys with the same ``{placeholders}``; a test checks it, and that every
  key a template uses exists.
- A missing key raises ``KeyError`` (a template bug shows up in tests, not as a blank).
- The language is the ``fb_lang`` cookie when it names a supported language, else the first
  supported language in ``Accept-Language``, else Chinese.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "LANG_COOKIE", "Translator", "catalog", "pick_language"]

LANGUAGES: tuple[str, ...] = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
LANG_COOKIE = "fb_lang"


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalog(language: str) -> dict[str, str]:
    """The flattened catalog of ``language`` (one of :data:`LANGUAGES`)."""
    if language not in LANGUAGES:
        raise KeyError(f"no catalog for language {language!r}")
    text = (
        resources.files("flowbureau.service")
        .joinpath(f"messages/{language}.toml")
        .read_text("utf-8")
    )
    return _flatten(tomllib.loads(text))


class Translator:
    """Looks messages up in one language's catalog and fills their placeholders."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._messages = catalog(language)

    def __call__(self, key: str, **values: Any) -> str:
        """The message ``key``, formatted with ``values``."""
        message = self._messages[key]
        return message.format(**values) if values else message

    def has(self, key: str) -> bool:
        """Whether the catalog has ``key``."""
        return key in self._messages


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The console language for a request (see the module rules)."""
    if cookie in LANGUAGES:
        return str(cookie)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        primary = tag.split("-")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE
