"""Anchoring the service's hash-chained audit log in the consortium ledger.

Rules:
- The audit log (:mod:`flowbureau.service.audit`) chains its rows by SHA-256, but someone able
  to rewrite the whole table and its head could forge a consistent chain. Appending the head
  (``seq``, ``hash``) to the consortium log as an ``anchor`` entry (``source = "audit"``) puts
  it under checkpoints the member banks cosign: a later rewrite of any row up to an anchored
  ``seq`` no longer matches the anchored hash, and ``flowbureau audit verify`` names the row.
- Anchoring happens on ``flowbureau audit anchor`` and, when
  ``FLOWBUREAU_LEDGER__ANCHOR_INTERVAL_SECONDS`` is set, periodically while the API runs
  (:class:`AuditAnchorer`). A head that has not moved since the last anchor is not anchored
  again; anchored ``seq`` only grows (the log refuses anything else).
- Anchors are read back from committed log entries only; ``flowbureau ledger verify`` checks
  that those entries are the ones the cosigned checkpoints cover.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import FlowbureauError
from flowbureau.ledger.entry import AnchorEntry, parse_entry
from flowbureau.ledger.models import LedgerEntry

if TYPE_CHECKING:
    from flowbureau.config import Settings
    from flowbureau.ledger.consortium import Ledger
    from flowbureau.ledger.receipts import Receipt

__all__ = ["AUDIT_SOURCE", "AuditAnchorer", "anchor_audit", "audit_anchors"]

AUDIT_SOURCE = "audit"
"""``source`` of the anchor entries that pin the audit log's head."""

_log = logging.getLogger(__name__)


def anchor_audit(ledger: Ledger, session: Session) -> Receipt | None:
    """Append the audit log's current head to the ledger; ``None`` when it has not moved."""
    from flowbureau.service.models import AuditHead

    head = session.get(AuditHead, 1)
    if head is None or head.seq == 0:
        return None
    log = ledger.log
    anchored = log.state.anchors.get(AUDIT_SOURCE)
    if anchored is not None and anchored[0] >= head.seq:
        return None
    return ledger.anchor(AUDIT_SOURCE, int(head.seq), bytes.fromhex(head.hash))


def audit_anchors(session: Session) -> list[tuple[int, str]]:
    """``(seq, hash hex)`` of every audit head anchored in the committed log, oldest first."""
    rows = session.execute(
        sa.select(LedgerEntry.idx, LedgerEntry.data)
        .where(LedgerEntry.kind == "anchor", LedgerEntry.pending_run.is_(None))
        .order_by(LedgerEntry.idx)
    ).all()
    anchors: list[tuple[int, str]] = []
    for index, data in rows:
        entry = parse_entry(bytes(data), where=f"entry {index}")
        if isinstance(entry, AnchorEntry) and entry.source == AUDIT_SOURCE:
            anchors.append((entry.seq, entry.head.hex()))
    return anchors


class AuditAnchorer:
    """Anchors the audit head every ``interval`` seconds in a daemon thread (API lifespan)."""

    def __init__(self, settings: Settings, interval: float) -> None:
        self.settings = settings
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start anchoring in the background."""
        self._thread = threading.Thread(target=self._loop, name="audit-anchor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current anchor, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        from flowbureau.ledger.embedded import open_ledger
        from flowbureau.storage.database import make_engine, session_factory

        engine = make_engine(self.settings.resolved_database_url)
        sessions = session_factory(engine)
        ledger = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    ledger = ledger or open_ledger(self.settings)
                    if not ledger.founded:
                        continue
                    with sessions() as session:
                        anchor_audit(ledger, session)
                except FlowbureauError as exc:  # keep serving; the next round retries
                    _log.warning("audit anchoring failed: %s", exc)
        finally:
            engine.dispose()
