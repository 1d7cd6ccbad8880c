"""Errors raised by flowbureau.

Rules:
- Every exception the package raises on purpose derives from :class:`FlowbureauError`.
- Bad input raises :class:`InputError` (or a subclass) carrying *where* the problem is: the
  file, the line (1-based) or XML path, and the field. ``str(err)`` renders that location
  first, so a CLI can print it as is and a user can jump to the spot.
- An operation that raises writes nothing: callers rely on that to retry safely.
- Domain packages add their own subclasses here so that one ``except`` clause per family
  is enough for adapters (CLI exit codes, HTTP problem details).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class FlowbureauError(Exception):
    """Root of every error flowbureau raises deliberately."""


class ConfigurationError(FlowbureauError):
    """Settings are missing, inconsistent or unsafe (e.g. a default secret in production)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in an input a problem sits: file plus line (1-based) or XML path, plus field."""

    file: str | None = None
    line: int | None = None
    path: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file)
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.path is not None:
            parts.append(self.path)
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts) if parts else "<unknown location>"


class InputError(FlowbureauError):
    """Input data is malformed. Carries the location of the first problem found."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        path: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.location = Location(
            file=None if file is None else str(file), line=line, path=path, field=field
        )
        super().__init__(f"{self.location}: {message}")

    @property
    def file(self) -> str | None:
        """The offending file, if known."""
        return self.location.file

    @property
    def line(self) -> int | None:
        """The offending 1-based line, if known."""
        return self.location.line

    @property
    def field(self) -> str | None:
        """The offending field or column, if known."""
        return self.location.field


class ParseError(InputError):
    """A file could be identified but its content does not follow the format."""


class FormatDetectionError(InputError):
    """No reader (or more than one, equally likely) accepts a file.

    ``tried`` lists ``(reader or profile name, why it did not match)`` for every candidate,
    so the message tells the user what was attempted and what to pass as an override.
    """

    def __init__(self, message: str, *, file: str | Path, tried: Sequence[tuple[str, str]]) -> None:
        self.tried = tuple(tried)
        detail = "; ".join(f"{name}: {why}" for name, why in self.tried)
        super().__init__(f"{message} (tried {detail})" if detail else message, file=file)


class StorageError(FlowbureauError):
    """The warehouse or service database is in a state an operation cannot work with."""


class NotFoundError(FlowbureauError):
    """A requested object (enterprise, account, model, record, ...) does not exist."""


class ConflictError(FlowbureauError):
    """The request conflicts with the current state (duplicate, wrong status, stale version)."""


class AuthenticationError(FlowbureauError):
    """Credentials are missing, wrong or expired."""


class PermissionDeniedError(FlowbureauError):
    """The caller is authenticated but not allowed: role policy, consent or operation type."""


class RateLimitedError(FlowbureauError):
    """Too many attempts in a window; ``retry_after`` seconds until the next may succeed."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class IntegrityError(FlowbureauError):
    """Stored data does not match its recorded hashes or signatures (tampering or corruption)."""


class ModelError(FlowbureauError):
    """A model cannot be trained, loaded or applied (bad artefact, incompatible version)."""


class BundleError(InputError):
    """A contribution bundle is refused (malformed, replayed, out of order, oversize, wrongly
    signed, or not matching its manifest); nothing of it is stored. Subclasses in
    :mod:`flowbureau.transport.bundle` say which."""


class LedgerError(FlowbureauError):
    """The consortium log refuses an operation: a governance change without quorum, an unknown
    or revoked member, a witness refusing to cosign (subclasses in :mod:`flowbureau.ledger`).
    A batch that breaks the contract is bad input instead (an :class:`InputError`)."""


class ModelInputError(InputError, ValueError):
    """Features or labels given to a model are unusable (wrong columns, types or labels).

    Also a ``ValueError`` so that scikit-learn tooling (estimator checks, pipelines) treats it
    like its own input errors.
    """


class IncompleteError(InputError):
    """Required information is missing; ``missing_fields`` names every missing field at once,
    so a user can complete them all in one go (``field`` is the first of them)."""

    def __init__(self, message: str, *, missing_fields: Sequence[str]) -> None:
        self.missing_fields = tuple(missing_fields)
        first = self.missing_fields[0] if self.missing_fields else None
        super().__init__(f"{message}: missing {', '.join(self.missing_fields)}", field=first)
