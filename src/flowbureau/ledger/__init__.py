"""The consortium ledger: a permissioned verifiable log with witness cosigning.

Modules: :mod:`.merkle` (RFC 9162 trees and proofs), :mod:`.note` and :mod:`.checkpoint` (C2SP
signed notes, checkpoints, cosignatures, verifier keys), :mod:`.witness`, :mod:`.membership`
(governed member list), :mod:`.contract` (admission rules), :mod:`.records` (leaf bytes),
:mod:`.manifest` and :mod:`.entry` (log entries), :mod:`.log` (the log over a pluggable store,
verification), :mod:`.receipts` (proofs anyone can check), :mod:`.consortium` (the embedded
set-up: :class:`~flowbureau.ledger.consortium.Ledger`). docs/ledger.md gives the exact bytes.
"""
