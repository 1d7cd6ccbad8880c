"""Which reader (and bank profile) a file needs, and reading it with that reader.

Rules:
- Every reader judges the first 64 KiB (``sniff``); the file extension adds 0.05 to the
  readers it is usual for, so it only ever breaks a tie between otherwise equal verdicts.
- Bank CSV/XLSX exports are judged once per profile: a named profile whose ``match`` headers
  are all in the header row scores 0.9, the generic profile 0.5 when its synonyms cover a
  date and an amount, so a named profile always wins over the generic one.
- Nothing above 0 -> :class:`~flowbureau.errors.FormatDetectionError` listing every candidate
  and why it did not match. Two different candidates with the same best score -> the same
  error, saying they are ambiguous and which override (``format=`` / ``profile=``) to pass.
- ``format=`` skips detection; ``profile=`` implies ``format="csv"``. An unknown format or
  profile name is an :class:`~flowbureau.errors.InputError` naming the known ones.
- The file is read once: its SHA-256 (lineage) and the parse use the same bytes.
- :func:`detect_file` also gives the file's SHA-256, so an ingest can skip a file it already
  stored without parsing it.
- A statement whose balances do not reconcile gets a warning saying by how much.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowbureau.errors import FlowbureauError, FormatDetectionError, InputError
from flowbureau.formats.bai import Bai2Reader
from flowbureau.formats.base import (
    BytesStatementReader,
    ParsedStatement,
    Sniff,
    reconcile,
    with_reconciliation_note,
)
from flowbureau.formats.camt import CamtReader
from flowbureau.formats.ofx import OfxReader
from flowbureau.formats.profiles import Profile, load_profiles
from flowbureau.formats.register import AccountRecord, RegisterReader
from flowbureau.formats.swift import Mt940Reader
from flowbureau.formats.tabular import XLS_MAGIC, XLSX_MAGIC, TabularReader

FORMATS: tuple[str, ...] = ("mt940", "camt", "bai2", "ofx", "csv", "register")
"""Formats ``read_file`` knows; ``csv`` covers CSV and XLSX bank exports, ``mt940`` MT942."""

HEAD_BYTES = 64 << 10
BULK_READ_BYTES = 64 << 20
"""How many bytes of CSV exports :func:`read_files` collects before reading them in bulk."""
EXTENSION_BONUS = 0.05
_EXTENSIONS: dict[str, frozenset[str]] = {
    "mt940": frozenset({".sta", ".940", ".942", ".mt940", ".mt942", ".swi", ".fin", ".txt"}),
    "camt": frozenset({".xml", ".camt", ".053", ".052", ".054"}),
    "bai2": frozenset({".bai", ".bai2"}),
    "ofx": frozenset({".ofx", ".qfx"}),
    "csv": frozenset({".csv", ".txt", ".xlsx"}),
    "register": frozenset({".csv", ".xlsx"}),
}
_READERS: dict[str, type[BytesStatementReader]] = {
    "mt940": Mt940Reader,
    "camt": CamtReader,
    "bai2": Bai2Reader,
    "ofx": OfxReader,
}


@dataclass(frozen=True)
class ReadResult:
    """What one file holds: its statements (or, for a register, its accounts) and lineage."""

    path: Path
    sha256: str
    format: str
    profile: str | None
    statements: list[ParsedStatement]
    accounts: list[AccountRecord]


@dataclass(frozen=True)
class _Candidate:
    format: str
    profile: str | None
    sniff: Sniff
    score: float

    @property
    def label(self) -> str:
        return f"{self.format}/{self.profile}" if self.profile else self.format


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=path) from None


def _candidates(path: Path, head: bytes, profiles: dict[str, Profile]) -> list[_Candidate]:
    suffix = path.suffix.lower()
    found: list[tuple[str, str | None, Sniff]] = [
        (name, None, reader().sniff(path, head)) for name, reader in _READERS.items()
    ]
    found.extend(
        ("csv", name, TabularReader(profile).sniff(path, head))
        for name, profile in profiles.items()
    )
    found.append(("register", None, RegisterReader().sniff(path, head)))
    return [
        _Candidate(
            fmt,
            profile,
            sniff,
            sniff.confidence
            + (EXTENSION_BONUS if sniff.confidence and suffix in _EXTENSIONS[fmt] else 0),
        )
        for fmt, profile, sniff in found
    ]


def _choose(path: Path, candidates: Sequence[_Candidate], *, empty: bool) -> _Candidate:
    tried = [(c.label, c.sniff.reason) for c in candidates]
    if empty:
        raise FormatDetectionError("the file is empty", file=path, tried=[])
    best = max(c.score for c in candidates)
    if best <= 0:
        raise FormatDetectionError(
            "cannot tell the file's format; pass format= (and profile= for bank CSV)",
            file=path,
            tried=tried,
        )
    top = [c for c in candidates if abs(c.score - best) < 1e-9]
    if len(top) > 1:
        raise FormatDetectionError(
            f"ambiguous: {', '.join(c.label for c in top)} all match equally; pass format= or "
            "profile= to choose",
            file=path,
            tried=[(c.label, c.sniff.reason) for c in top],
        )
    return top[0]


def detect(path: Path, *, profile_dirs: Sequence[Path] = ()) -> tuple[str, str | None]:
    """``(format, profile)`` of ``path`` judged from its first bytes and extension."""
    path = Path(path)
    with_head = _read_head(path)
    choice = _choose(
        path, _candidates(path, with_head, load_profiles(profile_dirs)), empty=not with_head
    )
    return choice.format, choice.profile


@dataclass(frozen=True)
class Detection:
    """What detection makes of one file's first bytes (:func:`detect_file`)."""

    register: bool
    """The account-register reader recognises it (whatever else may match better)."""
    choice: tuple[str, str | None] | None
    """``(format, profile)`` that ``read_file(format="auto")`` reads it with; ``None`` when
    detection fails (reading it raises the error)."""
    sha256: str | None = field(default=None, compare=False)
    """SHA-256 of the whole file (what :class:`ReadResult` would carry)."""


def detect_file(
    path: Path,
    *,
    profile_dirs: Sequence[Path] = (),
    format: str = "auto",
    profile: str | None = None,
) -> Detection:
    """Judge ``path`` once for both questions an ingest asks: is it an account register, and
    which reader (and profile) reads it; the file's SHA-256 comes with the answer. Pass the
    choices to :func:`read_files` (``detected``) so the files are not judged again.

    With ``format`` / ``profile`` given, ``choice`` is what :func:`read_file` with those
    options reads the file with (``register`` is then ``False``: nothing else is asked).
    """
    path = Path(path)
    profiles = _profiles(format, profile, profile_dirs)
    data = _read(path)
    digest = hashlib.sha256(data).hexdigest()
    if format != "auto" or profile is not None:
        try:
            return Detection(False, _choice(path, data, format, profile, profiles), digest)
        except FlowbureauError:
            return Detection(False, None, digest)
    head = data[:HEAD_BYTES]
    candidates = _candidates(path, head, profiles)
    register = any(c.format == "register" and c.sniff.confidence > 0 for c in candidates)
    try:
        chosen = _choose(path, candidates, empty=not head)
    except FlowbureauError:
        return Detection(register, None, digest)
    return Detection(register, (chosen.format, chosen.profile), digest)


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=path) from None


def read_file(
    path: Path,
    *,
    format: str = "auto",
    profile: str | None = None,
    profile_dirs: Sequence[Path] = (),
) -> ReadResult:
    """Read one statement file (or account register) into canonical records.

    ``format`` is one of :data:`FORMATS` or ``"auto"``; ``profile`` names a bank profile
    (built-in or in ``profile_dirs``) and implies ``format="csv"``. Raises
    :class:`~flowbureau.errors.FormatDetectionError` when the format cannot be told and
    :class:`~flowbureau.errors.InputError` (with file, line or XML path, and field) on
    malformed content.
    """
    path = Path(path)
    profiles = _profiles(format, profile, profile_dirs)
    data = _read(path)
    digest = hashlib.sha256(data).hexdigest()
    chosen = _choice(path, data, format, profile, profiles)
    return _read_chosen(path, data, digest, chosen, profiles)


def _read_chosen(
    path: Path,
    data: bytes,
    digest: str,
    chosen: tuple[str, str | None],
    profiles: dict[str, Profile],
) -> ReadResult:
    chosen_format, chosen_profile = chosen
    if chosen_format == "register":
        accounts = RegisterReader().parse_accounts(data, path)
        return ReadResult(path, digest, "register", None, [], accounts)
    if chosen_format == "csv":
        assert chosen_profile is not None
        statements = TabularReader(profiles[chosen_profile]).parse(data, path)
    else:
        statements = _READERS[chosen_format]().parse(data, path)
    return ReadResult(
        path, digest, chosen_format, chosen_profile, [_noted(s) for s in statements], []
    )


def read_files(
    paths: Iterable[Path],
    *,
    format: str = "auto",
    profile: str | None = None,
    profile_dirs: Sequence[Path] = (),
    detected: Mapping[Path, tuple[str, str | None]] | None = None,
) -> Iterator[ReadResult]:
    """``read_file`` of each path, in order, with bank CSV exports read in bulk.

    Yields what ``read_file`` returns for each path and raises the error it raises first
    (after yielding the files before it). CSV exports are collected (up to
    :data:`BULK_READ_BYTES` of files) and read by
    :meth:`~flowbureau.formats.tabular.TabularReader.parse_many`: their statements' entries
    are slices of shared tables (``ParsedStatement.span``). Other formats are read one by one.
    ``detected``: ``(format, profile)`` already chosen per path by :func:`detect_file` (used
    with ``format="auto"`` and no ``profile`` only; other paths are detected here).
    """
    profiles = _profiles(format, profile, profile_dirs)
    known = detected if detected is not None and format == "auto" and profile is None else {}
    pending: list[tuple[Path, bytes, str, str]] = []
    size = 0
    for given in paths:
        path = Path(given)
        try:
            data = _read(path)
            digest = hashlib.sha256(data).hexdigest()
            chosen = known.get(path) or _choice(path, data, format, profile, profiles)
        except FlowbureauError:
            yield from _read_bulk(pending, profiles)  # an earlier file's error comes first
            raise
        if chosen[0] == "csv" and not data.startswith((XLSX_MAGIC, XLS_MAGIC)):
            assert chosen[1] is not None
            pending.append((path, data, digest, chosen[1]))
            size += len(data)
            if size >= BULK_READ_BYTES:
                yield from _read_bulk(pending, profiles)
                pending, size = [], 0
            continue
        yield from _read_bulk(pending, profiles)
        pending, size = [], 0
        yield _read_chosen(path, data, digest, chosen, profiles)
    yield from _read_bulk(pending, profiles)


def _read_bulk(
    pending: Sequence[tuple[Path, bytes, str, str]], profiles: dict[str, Profile]
) -> Iterator[ReadResult]:
    """The collected CSV exports, read in bulk per profile, in their order."""
    if not pending:
        return
    by_profile: dict[str, list[int]] = {}
    for index, (_, _, _, name) in enumerate(pending):
        by_profile.setdefault(name, []).append(index)
    statements: list[list[ParsedStatement]] = [[] for _ in pending]
    try:
        for name, members in by_profile.items():
            reader = TabularReader(profiles[name])
            read = reader.parse_many([(pending[i][1], pending[i][0]) for i in members])
            for index, parsed in zip(members, read, strict=True):
                statements[index] = parsed
    except FlowbureauError:
        # Another profile's file may come earlier: read them all in order to raise its error.
        for path, data, _, name in pending:
            TabularReader(profiles[name]).parse(data, path)
        raise
    for (path, _, digest, name), parsed in zip(pending, statements, strict=True):
        yield ReadResult(path, digest, "csv", name, parsed, [])


def _profiles(format: str, profile: str | None, profile_dirs: Sequence[Path]) -> dict[str, Profile]:
    """The known profiles, after checking the ``format`` / ``profile`` options."""
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; known: {', '.join(FORMATS)}", field="format")
    if profile is not None and format not in ("auto", "csv"):
        raise InputError(f"a profile applies to format 'csv', not {format!r}", field="profile")
    profiles = load_profiles(profile_dirs)
    if profile is not None and profile not in profiles:
        raise InputError(
            f"unknown profile {profile!r}; known: {', '.join(sorted(profiles))}", field="profile"
        )
    return profiles


def _choice(
    path: Path, data: bytes, format: str, profile: str | None, profiles: dict[str, Profile]
) -> tuple[str, str | None]:
    """``(format, profile)`` to read ``data`` with: the options, else detection."""
    if profile is not None:
        return "csv", profile
    if format not in ("auto", "csv"):
        return format, None
    candidates = _candidates(path, data[:HEAD_BYTES], profiles)
    if format == "csv":
        candidates = [c for c in candidates if c.format == "csv"]
    choice = _choose(path, candidates, empty=not data)
    return choice.format, choice.profile


def _noted(statement: ParsedStatement) -> ParsedStatement:
    """The statement with a warning when its balances do not reconcile."""
    return with_reconciliation_note(statement, reconcile(statement))
