"""The consortium ledger of one installation: keys, log store, lock and recovery from settings.

Rules:
- Everything lives under ``data_dir``: keys in ``ledger/keys`` (0600 files in 0700 directories,
  encrypted when ``FLOWBUREAU_LEDGER__PASSPHRASE`` is set), the log in the service database
  (migrated to the newest revision outside production, checked in production), the append
  lock ``ledger/append.lock``.
- Appends of every process on this ``data_dir`` are serialised by that lock (``flock``; the OS
  releases it when a process dies), so a run's pending entries are only ever seen by the
  process that wrote them - or by recovery, after that process died.
- :func:`open_ledger` recovers before anything else: a pending run is committed exactly when the
  warehouse manifest lists every warehouse batch it names (the warehouse published it), else
  discarded; then a checkpoint is published if the newest entries have none.
- :class:`WarehouseHistory` answers the contract's "contributed before?" from the warehouse
  (the records stored and the records on the log are the same set, by the rule above), with one
  vectorised semi-join instead of a lookup per tx id.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from flowbureau.config import Settings, get_settings
from flowbureau.errors import ConfigurationError
from flowbureau.ledger.consortium import Ledger
from flowbureau.ledger.log import WitnessClient
from flowbureau.ledger.membership import witness_name
from flowbureau.ledger.store import SqlLogStore, SqlWitnessState
from flowbureau.transport.keys import Keystore

if TYPE_CHECKING:
    from flowbureau.storage.engine import Engine
    from flowbureau.storage.manifest import Manifest

__all__ = [
    "AppendLock",
    "WarehouseHistory",
    "keystore",
    "ledger_dir",
    "open_ledger",
    "prepare_database",
    "published_batches",
    "warehouse_rows",
]


_log = logging.getLogger(__name__)


def ledger_dir(settings: Settings) -> Path:
    """``data_dir/ledger``: keys and the append lock."""
    return settings.data_dir / "ledger"


def keystore(settings: Settings) -> Keystore:
    """The installation's keystore (keys created on first use)."""
    secret = settings.ledger.passphrase
    passphrase = None if secret is None else secret.get_secret_value().encode()
    return Keystore(ledger_dir(settings) / "keys", passphrase=passphrase)


def prepare_database(settings: Settings) -> None:
    """Migrate the service database (dev/test) or check it is migrated (production)."""
    from flowbureau.storage.database import current_revision, head_revision, upgrade_database

    url = settings.resolved_database_url
    current, head = current_revision(url), head_revision()
    if settings.env != "production":
        if current != head:  # migrating loads every domain's models: only when needed
            upgrade_database(url)
        return
    if current != head:
        raise ConfigurationError(
            f"the service database is at revision {current}, not {head}: "
            "run `flowbureau db upgrade` first"
        )


class AppendLock:
    """An exclusive ``flock`` on a file, re-entrant within a process (threads wait)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._guard = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._guard:
            if self._depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None


def published_batches(manifest: Manifest) -> set[str]:
    """Every warehouse batch id the manifest lists (any table)."""
    return {f.batch_id for files in manifest.tables.values() for f in files}


def _is_published(settings: Settings) -> Callable[[str], bool]:
    from flowbureau.storage.warehouse import Warehouse

    def check(batch_id: str) -> bool:
        manifest = Warehouse(settings.warehouse_dir, settings.warehouse).manifest()
        return batch_id in published_batches(manifest)

    return check


def open_ledger(
    settings: Settings | None = None,
    *,
    remote_witnesses: Mapping[str, WitnessClient] | None = None,
    replay: bool = True,
) -> Ledger:
    """The installation's ledger, recovered (see the module rules).

    ``remote_witnesses`` are members' witnesses reached over HTTP (``platform serve``); other
    members whose keys are local witness in process. With ``replay`` false nothing is replayed
    or published (``ledger verify`` examines a possibly broken store itself).
    """
    from flowbureau.storage.database import make_engine

    settings = settings or get_settings()
    prepare_database(settings)
    url = settings.resolved_database_url
    engine = make_engine(url)
    origin = settings.ledger.origin
    ledger = Ledger(
        SqlLogStore(engine),
        keystore(settings),
        origin=origin,
        lock=AppendLock(ledger_dir(settings) / "append.lock"),
        witness_state=lambda bank_id: SqlWitnessState(engine, witness_name(origin, bank_id)),
        remote_witnesses=remote_witnesses,
        quorum=settings.ledger.quorum,
    )
    refused = ledger.recover(
        _is_published(settings), refinalise=bool(remote_witnesses), checkpoint=replay
    )
    if refused is not None:
        _log.warning("the latest checkpoint is not final: %s", refused)
    return ledger


def warehouse_rows(
    settings: Settings | None = None, *, unreadable: list[tuple[str, str]] | None = None
) -> tuple[Iterator[pa.Table], Iterator[pa.Table]]:
    """Every stored record and statement of the committed warehouse, one Parquet file at a
    time, read from the files themselves (what ``ledger verify`` recomputes). A file that
    cannot be read is skipped and listed in ``unreadable`` as ``(path, error)``."""
    import pyarrow.parquet as pq

    from flowbureau.schema import STATEMENT_SCHEMA, STORED_TRANSACTION_SCHEMA
    from flowbureau.storage.warehouse import Warehouse

    settings = settings or get_settings()
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    manifest = warehouse.manifest()

    def read(table: str, schema: pa.Schema) -> Iterator[pa.Table]:
        for file in manifest.files(table):
            try:
                yield pq.read_table(warehouse.root / file.path).select(schema.names)
            except (OSError, pa.ArrowException, KeyError) as exc:
                if unreadable is None:
                    raise
                unreadable.append((file.path, str(exc)))

    return (
        read("transactions", STORED_TRANSACTION_SCHEMA),
        read("statements", STATEMENT_SCHEMA),
    )


class WarehouseHistory:
    """The contract's tx-id history answered by the warehouse engine's ``stored_transactions``
    (for a writer: the committed snapshot plus this run's staged batches)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def seen(self, bank_id: str, tx_ids: pa.Array) -> set[str]:
        """The subset of ``tx_ids`` the warehouse already holds for ``bank_id``."""
        if not len(tx_ids):
            return set()
        relation = "__ledger_history_ids"
        self.engine.register(relation, pa.table({"tx_id": tx_ids.cast(pa.string())}))
        try:
            found = self.engine.query(
                f"SELECT DISTINCT s.tx_id FROM stored_transactions s SEMI JOIN {relation} h "
                "USING (tx_id) WHERE s.bank_id = ?",
                [bank_id],
            )
        finally:
            self.engine.unregister(relation)
        return set(found.column("tx_id").to_pylist())
