"""The platform service: accounts, sign-in, enterprise information, applications, consent,
the open API for institutions and the audit log, served over HTTP by FastAPI.

Layout: ``models`` (tables), ``schemas`` (request/response bodies), one module of keyword-only
domain functions per concern (``accounts``, ``otp``, ``tokens``, ``apikeys``, ``profiles``,
``applications``, ``consent``, ``audit``, ``records`` (identity resolution and freshness as the
service offers them), ``webhooks``, ``feedback`` (anomaly verdicts), ``demo``), the web console's
machinery (``console``, ``i18n``, ``templates/``, ``static/``, ``messages/``), ``routes/`` (thin
HTTP adapters, API and console) and :func:`flowbureau.service.app.create_app`. This package's
``__init__`` imports nothing heavy, because :mod:`flowbureau.config` imports
:mod:`flowbureau.service.settings` at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowbureau.service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from flowbureau.service.app import create_app

        return create_app
    raise AttributeError(name)
