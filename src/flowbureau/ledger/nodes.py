"""Networked nodes: the platform and bank nodes as separate processes talking HTTP.

Rules:
- ``flowbureau platform serve`` runs :func:`create_platform_app`: it receives bundles
  (``POST /v1/ledger/bundles``, the raw bundle bytes), opens and checks them, runs the contract,
  stores the rows in its warehouse and appends the entry together
  (:func:`flowbureau.ledger.intake.admit_bundle`), and asks every member's witness over HTTP to
  cosign the new checkpoint. Refusals map to HTTP statuses with one JSON problem
  ``{"error", "message", "field", "violations"}``; nothing is stored on a refusal.
- ``flowbureau node serve --bank ID`` runs :func:`create_node_app`: the bank's witness
  (``POST /witness/add-checkpoint``, the request and responses of c2sp.org/tlog-witness) and
  ``POST /v1/contributions`` ({"paths": [...]}), which reads and cleans statement files with the
  ingest pipeline into the node's own warehouse and sends each batch as a bundle.
- A node trusts the log key and origin of the genesis it approved (``flowbureau ledger
  approve``), kept in ``data_dir/ledger/trusted-log.json``; its witness state is in its own
  service database. A refusal because of a fork (422) is recorded as evidence - both
  log-signed checkpoints - in ``data_dir/ledger/evidence/`` and listed by
  ``GET /witness/evidence``; the platform sees the refusal too.
- Bundles leave a node through an outbox: a batch's bundle is staged in
  ``data_dir/ledger/outbox`` before the node's local warehouse publishes and becomes ready after;
  ready bundles are delivered in sequence order, and each receipt is kept (``ledger_receipts``).
  A bundle the platform already has (a lost response) is settled by fetching its receipt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from flowbureau.config import Settings, get_settings
from flowbureau.errors import (
    BundleError,
    ConflictError,
    FlowbureauError,
    InputError,
    LedgerError,
    NotFoundError,
)
from flowbureau.ledger.canonical import b64, unb64
from flowbureau.ledger.consortium import BankNode
from flowbureau.ledger.contract import Contract, ContractRejectedError
from flowbureau.ledger.intake import LedgerSummary, is_published_by
from flowbureau.ledger.membership import Genesis, witness_name
from flowbureau.ledger.note import ED25519, NoteSignature, NoteVerifier, parse_note
from flowbureau.ledger.receipts import Receipt
from flowbureau.ledger.witness import (
    AddCheckpointRequest,
    SplitViewError,
    StaleOldSizeError,
    Witness,
    WitnessRefusedError,
)
from flowbureau.transport.bundle import (
    BundleOrderError,
    BundleReplayError,
    BundleSignatureError,
    BundleTooLargeError,
    MalformedBundleError,
    ManifestMismatchError,
    UnknownBankError,
)
from flowbureau.transport.keys import BankKeys

if TYPE_CHECKING:
    from flowbureau.ingestion import IngestReport
    from flowbureau.storage.warehouse import WarehouseWriter

__all__ = [
    "BankState",
    "HttpWitnessClient",
    "NodeIngest",
    "NodeService",
    "Outbox",
    "PlatformClient",
    "TrustedLog",
    "create_node_app",
    "create_platform_app",
    "load_trusted_log",
    "trust_genesis",
]

TLOG_SIZE = "text/x.tlog.size"
"""Content type of a 409 response telling the witness's latest size (tlog-witness)."""


# --- what a node trusts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedLog:
    """The log a bank's node witnesses: origin, log key and the platform's sealing key."""

    origin: str
    log_key: bytes
    platform_box_key: bytes

    def verifier(self) -> NoteVerifier:
        """The log key as a note verifier (its name is the origin)."""
        return NoteVerifier(self.origin, ED25519, self.log_key)


def _trusted_path(settings: Settings) -> Path:
    return settings.data_dir / "ledger" / "trusted-log.json"


def trust_genesis(settings: Settings, genesis: Genesis) -> TrustedLog:
    """Record the log a founder approved as the one this node trusts (refuses a second one)."""
    trusted = TrustedLog(genesis.origin, genesis.log_key, genesis.platform_box_key)
    path = _trusted_path(settings)
    data = {
        "origin": trusted.origin,
        "log_key": b64(trusted.log_key),
        "platform_box_key": b64(trusted.platform_box_key),
    }
    if path.exists():
        if json.loads(path.read_text("utf-8")) != data:
            raise ConflictError(f"{path} already trusts another log; remove it to change logs")
        return trusted
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    return trusted


def load_trusted_log(settings: Settings) -> TrustedLog:
    """The log this node trusts, or an error saying to approve the genesis first."""
    path = _trusted_path(settings)
    if not path.exists():
        raise LedgerError(
            f"{path} is missing: approve the consortium's genesis on this node first "
            "(flowbureau ledger approve GENESIS --bank ID)"
        )
    data = json.loads(path.read_text("utf-8"))
    return TrustedLog(
        str(data["origin"]),
        unb64(data["log_key"], size=32),
        unb64(data["platform_box_key"], size=32),
    )


# --- HTTP clients -----------------------------------------------------------------------------


class HttpWitnessClient:
    """A member's witness reached over HTTP (c2sp.org/tlog-witness ``add-checkpoint``)."""

    def __init__(self, name: str, url: str, *, timeout: float = 10.0) -> None:
        self._name = name
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def name(self) -> str:
        """The witness's key name."""
        return self._name

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], checkpoint: bytes
    ) -> NoteSignature:
        """POST the request; return the cosignature or raise the refusal the status means."""
        body = AddCheckpointRequest(old_size, tuple(proof), checkpoint).to_bytes()
        try:
            response = httpx.post(
                f"{self.url}/witness/add-checkpoint", content=body, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise LedgerError(f"witness {self.name} at {self.url} unreachable: {exc}") from None
        if response.status_code == 200:
            for signature in _signature_lines(response.content):
                if signature.name == self.name:
                    return signature
            raise WitnessRefusedError(
                "answered without its cosignature", status=502, witness=self.name
            )
        text = response.text
        if response.status_code == 409:
            size = text.strip()
            if not size.isdigit():
                raise WitnessRefusedError(
                    f"409 without a size: {text[:200]}", status=409, witness=self.name
                )
            raise StaleOldSizeError(witness=self.name, expected=int(size), got=old_size)
        if response.status_code == 422 and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            data = response.json()
            if "previous" in data and "offending" in data:
                raise SplitViewError(
                    str(data.get("message", "split view")),
                    witness=self.name,
                    previous=str(data["previous"]).encode(),
                    offending=str(data["offending"]).encode(),
                )
        raise WitnessRefusedError(text[:500], status=response.status_code, witness=self.name)


def _signature_lines(body: bytes) -> list[NoteSignature]:
    """Parse the signature lines of a 200 add-checkpoint response."""
    text = body.decode("utf-8", errors="replace")
    lines = [line for line in text.split("\n") if line]
    # a note with a placeholder text lets parse_note check each line strictly
    note = parse_note("x\n\n" + "".join(f"{line}\n" for line in lines))
    return list(note.signatures)


@dataclass(frozen=True, slots=True)
class BankState:
    """What a bank node needs from the platform before packing: sequence, contract, keys."""

    next_seq: int
    contract: Contract
    platform_box_key: bytes
    origin: str


class PlatformClient:
    """The platform's API as a bank node uses it."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str) -> httpx.Response:
        try:
            response = httpx.get(f"{self.url}{path}", timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise LedgerError(f"platform at {self.url} unreachable: {exc}") from None
        return response

    def bank_state(self, bank_id: str) -> BankState:
        """The bank's next sequence number, the contract in force and the platform's box key."""
        response = self._get(f"/v1/ledger/banks/{bank_id}")
        data = _json_or_raise(response)
        return BankState(
            int(data["next_seq"]),
            Contract.from_description(data["contract"]),
            unb64(data["platform_box_key"], size=32),
            str(data["origin"]),
        )

    def submit(self, bundle: bytes) -> dict[str, Any]:
        """POST a bundle; the receipt JSON (plus ``final``/``problem``) or the refusal raised."""
        try:
            response = httpx.post(
                f"{self.url}/v1/ledger/bundles",
                content=bundle,
                headers={"content-type": "application/octet-stream"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise LedgerError(f"platform at {self.url} unreachable: {exc}") from None
        return _json_or_raise(response)

    def receipt(self, bank_id: str, seq: int) -> dict[str, Any]:
        """The receipt of the bank's batch ``seq`` (for a bundle whose answer was lost)."""
        return _json_or_raise(self._get(f"/v1/ledger/banks/{bank_id}/receipts/{seq}"))


_ERRORS: dict[str, type[FlowbureauError]] = {
    cls.__name__: cls
    for cls in (
        BundleReplayError,
        BundleOrderError,
        BundleSignatureError,
        BundleTooLargeError,
        MalformedBundleError,
        ManifestMismatchError,
        UnknownBankError,
    )
}


def _json_or_raise(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = {"message": response.text[:500]}
    if response.status_code < 400:
        return dict(data)
    name = str(data.get("error", ""))
    message = str(data.get("message", response.text[:500]))
    kind = _ERRORS.get(name)
    if kind is not None and issubclass(kind, InputError):
        raise kind(message, field=data.get("field"))
    if response.status_code == 404:
        raise NotFoundError(message)
    if response.status_code in (400, 403, 409, 413, 422):
        raise InputError(f"platform refused ({response.status_code} {name}): {message}")
    raise LedgerError(f"platform error {response.status_code}: {message}")


# --- the platform --------------------------------------------------------------------------


def _problem(status: int, exc: Exception) -> JSONResponse:
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, InputError):
        body["field"] = exc.field
    if isinstance(exc, ContractRejectedError):
        body["violations"] = [v.to_json() for v in exc.violations]
    return JSONResponse(body, status_code=status)


def _status(exc: FlowbureauError) -> int:
    if isinstance(exc, BundleReplayError | ConflictError):
        return 409
    if isinstance(exc, BundleTooLargeError):
        return 413
    if isinstance(exc, BundleSignatureError | UnknownBankError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ContractRejectedError | BundleError | InputError):
        return 422
    return 500


def create_platform_app(
    settings: Settings | None = None, *, witnesses: Mapping[str, str] | None = None
) -> FastAPI:
    """The platform's HTTP API (``witnesses``: bank id -> node URL, cosigning over HTTP)."""
    from flowbureau.ledger.embedded import open_ledger
    from flowbureau.ledger.intake import admit_bundle

    settings = settings or get_settings()
    urls = {**settings.ledger.witnesses, **(witnesses or {})}
    origin = settings.ledger.origin
    clients = {
        bank: HttpWitnessClient(
            witness_name(origin, bank), url, timeout=settings.ledger.witness_timeout_seconds
        )
        for bank, url in urls.items()
    }
    ledger = open_ledger(settings, remote_witnesses=clients)
    app = FastAPI(title="flowbureau platform (consortium ledger)", docs_url=None, redoc_url=None)

    @app.exception_handler(FlowbureauError)
    async def refused(_request: Request, exc: FlowbureauError) -> Response:
        return _problem(_status(exc), exc)

    @app.post("/v1/ledger/bundles")
    async def receive_bundle(request: Request) -> JSONResponse:
        """Admit one bundle: checks, contract, warehouse + log, checkpoint; the receipt."""
        data = await request.body()
        outcome = await run_in_threadpool(
            admit_bundle, ledger, data, settings=settings, source="bundle"
        )
        receipt = outcome.receipts[0].to_json()
        summary = LedgerSummary.of(outcome)
        return JSONResponse({**receipt, "final": summary.final, "problem": summary.problem})

    @app.get("/v1/ledger/keys")
    def keys() -> dict[str, Any]:
        """The trust policy: ``{"log", "witnesses", "quorum"}``."""
        return ledger.keys().to_json()

    @app.get("/v1/ledger/checkpoint")
    def checkpoint() -> PlainTextResponse:
        """The latest checkpoint (signed note, with its cosignatures)."""
        return PlainTextResponse(ledger.checkpoint().decode())

    @app.get("/v1/ledger/banks/{bank_id}")
    def bank_state(bank_id: str) -> dict[str, Any]:
        """The bank's next sequence number, the contract in force, the platform's box key."""
        log = ledger.log
        membership = log.membership
        if membership.member(bank_id, log.size) is None:
            raise UnknownBankError(f"{bank_id} is not an active member", field="bank_id")
        return {
            "bank_id": bank_id,
            "next_seq": log.next_seq(bank_id),
            "contract": membership.contract.description(),
            "platform_box_key": b64(membership.platform_box_key),
            "origin": membership.origin,
        }

    @app.get("/v1/ledger/banks/{bank_id}/receipts/{seq}")
    def bank_receipt(bank_id: str, seq: int) -> dict[str, Any]:
        """The receipt of a bank's batch by sequence number."""
        index = ledger.store.batch_entry(bank_id, seq)
        if index is None:
            raise NotFoundError(f"{bank_id} has no batch {seq} on the log")
        return ledger.log.receipt(int(index)).to_json()

    @app.get("/v1/ledger/proofs/{tx_id}")
    def prove(tx_id: str, bank: str | None = None) -> dict[str, Any]:
        """Proof that a stored record is in the log."""
        return ledger.prove(tx_id, bank_id=bank).to_json()

    @app.get("/v1/ledger/consistency")
    def consistency(old: int, new: int | None = None) -> dict[str, Any]:
        """Proof that the log of ``new`` entries extends the log of ``old``."""
        return ledger.consistency(old, new).to_json()

    @app.post("/v1/ledger/checkpoint")
    def republish() -> PlainTextResponse:
        """Sign and gather cosignatures for the current size again (after a witness was down)."""
        from flowbureau.ledger.log import CheckpointNotFinalError

        try:
            ledger.log.publish_checkpoint()
        except CheckpointNotFinalError as exc:
            return PlainTextResponse(str(exc), status_code=202)
        return PlainTextResponse(ledger.checkpoint().decode())

    return app


# --- a bank node ---------------------------------------------------------------------------


class Outbox:
    """Bundles waiting to be delivered, as files ``<seq>.<warehouse batch>.bundle``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def stage(self, seq: int, batch_id: str, data: bytes) -> Path:
        """Write a bundle that becomes deliverable once its warehouse batch is published."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{seq:012d}.{batch_id}.staged"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return path

    def promote(self, paths: Sequence[Path]) -> None:
        """Make staged bundles deliverable (their batches are published)."""
        for path in paths:
            os.replace(path, path.with_suffix(".bundle"))

    def recover(self, is_published: Any) -> None:
        """Promote staged bundles whose batch was published before a crash; drop the others."""
        if not self.directory.exists():
            return
        for path in sorted(self.directory.glob("*.staged")):
            batch_id = path.name.split(".")[1]
            if is_published(batch_id):
                self.promote([path])
            else:
                path.unlink()

    def ready(self) -> list[tuple[int, Path]]:
        """Deliverable bundles in sequence order."""
        if not self.directory.exists():
            return []
        return sorted((int(p.name.split(".")[0]), p) for p in self.directory.glob("*.bundle"))


class NodeIngest:
    """The node's side of the ingest commit: contract, bundle, outbox (see module rules)."""

    def __init__(self, bank_id: str, keys: BankKeys, state: BankState, outbox: Outbox) -> None:
        self.bank_id = bank_id
        self.node = BankNode(bank_id, keys)
        self.state = state
        self.outbox = outbox
        self.next_seq = state.next_seq + len(outbox.ready())
        self.staged: list[Path] = []

    def contribute(
        self,
        writer: WarehouseWriter,
        *,
        bank_id: str,
        batch_id: str,
        records: pa.Table,
        statements: pa.Table,
    ) -> tuple[pa.Table, pa.Table]:
        """Check and pack one batch; stage its bundle; store the rows locally as they are."""
        from flowbureau.ledger.embedded import WarehouseHistory

        if bank_id != self.bank_id:
            raise InputError(
                f"this node contributes for {self.bank_id}, not {bank_id}", field="bank_id"
            )
        if not records.num_rows and not statements.num_rows:
            return records, statements
        packed = self.node.prepare(
            records,
            statements,
            seq=self.next_seq,
            contract=self.state.contract,
            platform_box_key=self.state.platform_box_key,
            history=WarehouseHistory(writer.engine),
            created_at=datetime.now(UTC),
        )
        self.staged.append(self.outbox.stage(self.next_seq, batch_id, packed.data))
        self.next_seq += 1
        return records, statements

    def publish(self, writer: WarehouseWriter) -> LedgerSummary:
        """Publish the local warehouse, then make the run's bundles deliverable."""
        writer.publish()
        self.outbox.promote(self.staged)
        queued = len(self.staged)
        self.staged = []
        return LedgerSummary([], None, True, None if queued else "nothing to contribute")


class NodeService:
    """A bank's node: contributes through the platform, keeps receipts, witnesses the log."""

    def __init__(self, settings: Settings, bank_id: str, platform: PlatformClient) -> None:
        from flowbureau.ledger.embedded import keystore, prepare_database
        from flowbureau.ledger.store import SqlWitnessState
        from flowbureau.storage.database import make_engine

        self.settings = settings
        self.bank_id = bank_id
        self.platform = platform
        prepare_database(settings)
        self.engine = make_engine(settings.resolved_database_url)
        self.keys = keystore(settings).bank(bank_id)
        self.trusted = load_trusted_log(settings)
        name = witness_name(self.trusted.origin, bank_id)
        self.witness = Witness(
            name,
            self.keys.witness,
            self.trusted.verifier(),
            state=SqlWitnessState(self.engine, name),
        )
        self.outbox = Outbox(settings.data_dir / "ledger" / "outbox")
        self.evidence_dir = settings.data_dir / "ledger" / "evidence"

    def add_checkpoint(self, body: bytes) -> list[NoteSignature]:
        """Handle one tlog-witness request; record a fork's evidence before re-raising."""
        request = AddCheckpointRequest.parse(body)
        try:
            return [
                self.witness.add_checkpoint(request.old_size, request.proof, request.checkpoint)
            ]
        except SplitViewError as exc:
            self._record(exc)
            raise

    def _record(self, exc: SplitViewError) -> None:
        self.evidence_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        evidence = {
            "witness": exc.witness,
            "message": str(exc),
            "previous": exc.previous.decode(),
            "offending": exc.offending.decode(),
            "recorded_at": stamp,
        }
        (self.evidence_dir / f"split-view-{stamp}.json").write_text(
            json.dumps(evidence, indent=2) + "\n", "utf-8"
        )

    def evidence(self) -> list[dict[str, Any]]:
        """Every fork this witness refused, oldest first."""
        if not self.evidence_dir.exists():
            return []
        return [json.loads(p.read_text("utf-8")) for p in sorted(self.evidence_dir.glob("*.json"))]

    def contribute(self, paths: Sequence[Path]) -> dict[str, Any]:
        """Ingest ``paths`` into the node's warehouse, contributing every batch; deliver."""
        from flowbureau.ingestion import ingest
        from flowbureau.storage.warehouse import Warehouse

        warehouse = Warehouse(self.settings.warehouse_dir, self.settings.warehouse)
        with warehouse.writer() as writer:
            self.outbox.recover(is_published_by(writer))
        delivered = self.deliver()
        sink = NodeIngest(
            self.bank_id, self.keys, self.platform.bank_state(self.bank_id), self.outbox
        )
        report: IngestReport = ingest(list(paths), bank_id=self.bank_id, ledger=sink)
        delivered += self.deliver()
        return {"ingest": report.to_json(), "receipts": delivered}

    def deliver(self) -> list[dict[str, Any]]:
        """Send every ready bundle in order and keep the receipts; stop at the first failure."""
        delivered: list[dict[str, Any]] = []
        for seq, path in self.outbox.ready():
            try:
                answer = self.platform.submit(path.read_bytes())
            except BundleReplayError:
                answer = self.platform.receipt(self.bank_id, seq)
            self._keep(seq, answer)
            path.unlink()
            delivered.append({"seq": seq, **answer})
        return delivered

    def _keep(self, seq: int, answer: Mapping[str, Any]) -> None:
        from flowbureau.ledger.models import LedgerReceipt
        from flowbureau.storage.database import session_factory

        receipt = Receipt.from_json(answer)
        with session_factory(self.engine).begin() as session:
            session.merge(
                LedgerReceipt(
                    bank_id=self.bank_id,
                    seq=seq,
                    entry_idx=receipt.index,
                    receipt=json.dumps(receipt.to_json()),
                    received_at=datetime.now(UTC),
                )
            )

    def receipts(self) -> list[dict[str, Any]]:
        """Every receipt this node kept, by sequence number."""
        import sqlalchemy as sa

        from flowbureau.ledger.models import LedgerReceipt
        from flowbureau.storage.database import session_factory

        with session_factory(self.engine)() as session:
            rows = session.execute(
                sa.select(LedgerReceipt)
                .where(LedgerReceipt.bank_id == self.bank_id)
                .order_by(LedgerReceipt.seq)
            ).scalars()
            return [{"seq": r.seq, **json.loads(r.receipt)} for r in rows]


def create_node_app(settings: Settings | None, bank_id: str, platform_url: str) -> FastAPI:
    """A bank node's HTTP API: the witness and the contribution trigger (loopback use)."""
    settings = settings or get_settings()
    node = NodeService(settings, bank_id, PlatformClient(platform_url))
    app = FastAPI(title=f"flowbureau bank node {bank_id}", docs_url=None, redoc_url=None)

    @app.exception_handler(FlowbureauError)
    async def refused(_request: Request, exc: FlowbureauError) -> Response:
        return _problem(_status(exc), exc)

    @app.post("/witness/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        """tlog-witness: cosign after checking consistency, or refuse with its status."""
        body = await request.body()
        try:
            signatures = await run_in_threadpool(node.add_checkpoint, body)
        except SplitViewError as exc:
            return JSONResponse(
                {
                    "error": "SplitViewError",
                    "message": str(exc),
                    "previous": exc.previous.decode(),
                    "offending": exc.offending.decode(),
                },
                status_code=422,
            )
        except StaleOldSizeError as exc:
            return PlainTextResponse(f"{exc.expected}\n", status_code=409, media_type=TLOG_SIZE)
        except WitnessRefusedError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        except InputError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return PlainTextResponse("".join(s.line() for s in signatures))

    @app.get("/witness/evidence")
    def evidence() -> list[dict[str, Any]]:
        """Forks this witness refused (both log-signed checkpoints each)."""
        return node.evidence()

    @app.post("/v1/contributions")
    async def contribute(request: Request) -> JSONResponse:
        """Read, clean and contribute statement files ``{"paths": [...]}`` (node-local paths)."""
        data = await request.json()
        paths = [Path(p) for p in data.get("paths", [])]
        if not paths:
            raise InputError("give the statement files to contribute", field="paths")
        result = await run_in_threadpool(node.contribute, paths)
        return JSONResponse(result)

    @app.get("/v1/receipts")
    def receipts() -> list[dict[str, Any]]:
        """The receipts this node received, by sequence number."""
        return node.receipts()

    return app
