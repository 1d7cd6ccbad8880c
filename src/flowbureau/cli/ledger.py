"""CLI adapters of the consortium ledger: ``init``, ``ledger ...``, ``node ...``, ``platform ...``.

Thin adapters over :mod:`flowbureau.ledger` (:func:`~flowbureau.ledger.embedded.open_ledger`,
:class:`~flowbureau.ledger.consortium.Ledger`, :mod:`~flowbureau.ledger.nodes`). ``--json``
prints exactly one JSON document on stdout. A broken ledger raises
:class:`~flowbureau.errors.IntegrityError` (exit 1) after naming every problem; bad input
(a malformed document, an unknown bank) exits 2. Heavy imports stay inside the commands.

Governance across hosts is a file ceremony: the platform drafts (``ledger draft-genesis``,
``ledger propose``), each member signs on its own node (``ledger approve``), the platform
appends with the approvals (``ledger found``, ``ledger apply``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowbureau.cli.output import echo_json

if TYPE_CHECKING:
    from flowbureau.ledger.consortium import Ledger

app = typer.Typer(
    help="The consortium ledger: keys, checkpoints, proofs, verification, governance.",
    no_args_is_help=True,
)
node_app = typer.Typer(
    help="A bank's node: witness and contributions over HTTP.", no_args_is_help=True
)
platform_app = typer.Typer(help="The platform: receives bundles over HTTP.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _ledger() -> Ledger:
    from flowbureau.ledger.embedded import open_ledger

    return open_ledger()


def _read_json(path: Path, what: str) -> Any:
    from flowbureau.errors import InputError

    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the {what}: {exc}", file=path) from None


def init(
    bank: Annotated[
        list[str] | None,
        typer.Option("--bank", help="Bank ids to found the consortium with (repeatable)."),
    ] = None,
    quorum: Annotated[
        int | None, typer.Option(min=1, help="Witness and approval quorum (default: majority).")
    ] = None,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Prompt for a passphrase encrypting the new key files (then set "
            "FLOWBUREAU_LEDGER__PASSPHRASE for later commands).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create the service database, the platform's keys and, with --bank, found the consortium."""
    from flowbureau.config import get_settings

    if passphrase:
        secret = typer.prompt("key passphrase", hide_input=True, confirmation_prompt=True)
        os.environ["FLOWBUREAU_LEDGER__PASSPHRASE"] = secret
        get_settings.cache_clear()
    ledger = _ledger()
    ledger.keystore.platform()
    banks = list(bank or [])
    if banks and not ledger.founded:
        ledger.found(banks, quorum=quorum)
    for bank_id in banks:
        ledger.ensure_member(bank_id)
    keys_dir = ledger.keystore.root
    data: dict[str, Any] = {"keys": str(keys_dir), "founded": ledger.founded}
    if ledger.founded:
        data["policy"] = ledger.keys().to_json()
        data["size"] = ledger.log.size
    if as_json:
        echo_json(data)
        return
    typer.echo(f"keys in {keys_dir} (files 0600)")
    if ledger.founded:
        typer.echo(f"consortium log of {data['size']} entries; trust policy:")
        typer.echo(json.dumps(data["policy"], indent=2))
    else:
        typer.echo("no consortium yet: the first `flowbureau ingest --bank ID` founds it")


@app.command("keys")
def keys(as_json: JsonOption = False) -> None:
    """The trust policy: the log's verifier key, the witnesses' keys and the quorum."""
    policy = _ledger().keys().to_json()
    if as_json:
        echo_json(policy)
        return
    typer.echo(f"log       {policy['log']}")
    for witness in policy["witnesses"]:
        typer.echo(f"witness   {witness}")
    typer.echo(f"quorum    {policy['quorum']} of {len(policy['witnesses'])}")


@app.command("checkpoint")
def checkpoint(
    publish: Annotated[
        bool, typer.Option("--publish", help="Sign the current size again and gather cosignatures.")
    ] = False,
) -> None:
    """Print the latest checkpoint: a C2SP signed note with its cosignatures."""
    ledger = _ledger()
    if publish:
        ledger.log.publish_checkpoint()
    typer.echo(ledger.checkpoint().decode(), nl=False)


@app.command("prove")
def prove(
    tx_id: Annotated[str, typer.Argument(help="The stored transaction's tx_id.")],
    bank: Annotated[
        str | None, typer.Option("--bank", help="The bank, if the tx id is in several batches.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Proof that a stored record is in the log: batch path, entry, log path, checkpoint."""
    proof = _ledger().prove(tx_id, bank_id=bank).to_json()
    if as_json:
        echo_json(proof)
        return
    typer.echo(f"record leaf  {proof['leaf_hash']}")
    batch, log = proof["batch"], proof["log"]
    typer.echo(f"batch        leaf {batch['index']} of {batch['size']}, root {batch['root']}")
    typer.echo(f"log          entry {log['index']} of {log['size']}, root {log['root']}")
    typer.echo(proof["checkpoint"], nl=False)


@app.command("consistency")
def consistency(
    old: Annotated[int, typer.Argument(help="The earlier log size.")],
    new: Annotated[int, typer.Argument(help="The later log size.")],
    as_json: JsonOption = False,
) -> None:
    """Proof that the log of NEW entries extends the log of OLD entries (RFC 9162)."""
    proof = _ledger().consistency(old, new).to_json()
    if as_json:
        echo_json(proof)
        return
    typer.echo(f"{old} -> {new}: {proof['old_root']} -> {proof['new_root']}")
    for node in proof["proof"]:
        typer.echo(f"  {node}")


@app.command("verify")
def verify(as_json: JsonOption = False) -> None:
    """Recompute every record leaf from the warehouse, every batch root, the whole log and every
    signature; exit 0 only if all hold, else name each broken record, entry or checkpoint."""
    from flowbureau.errors import IntegrityError
    from flowbureau.ledger.embedded import open_ledger, warehouse_rows

    ledger = open_ledger(replay=False)
    unreadable: list[tuple[str, str]] = []
    records, statements = warehouse_rows(unreadable=unreadable)
    report = ledger.verify(records=records, statements=statements)
    for path, error in unreadable:
        report.add("file", path, f"cannot be read: {error}")
    problems = [{"kind": p.kind, "ref": p.ref, "message": p.message} for p in report.problems]
    data = {
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "records": report.records,
        "statements": report.statements,
        "problems": problems,
        "unnamed": report.unnamed,
    }
    if as_json:
        echo_json(data)
    elif report.ok:
        typer.echo(
            f"ledger intact: {report.entries} entries, {report.checkpoints} checkpoints, "
            f"{report.records} records and {report.statements} statements recomputed"
        )
    else:
        for problem in report.problems:
            typer.echo(f"BROKEN {problem}", err=True)
        for kind, count in report.unnamed.items():
            typer.echo(f"BROKEN ... and {count} more {kind} problems", err=True)
    if not report.ok:
        raise IntegrityError(f"ledger verification failed: {len(report.problems)} problems named")


@app.command("members")
def members(as_json: JsonOption = False) -> None:
    """The active members, their roles and keys (replayed from the log)."""
    ledger = _ledger()
    log = ledger.log
    active = [m.to_json() for m in log.membership.active(log.size)]
    data: dict[str, Any] = {
        "members": active,
        "approval_quorum": log.membership.approval_quorum,
        "witness_quorum": log.membership.witness_quorum,
        "contract": {
            "version": log.membership.contract.version,
            "hash": log.membership.contract.hash.hex(),
        },
    }
    if as_json:
        echo_json(data)
        return
    for member in active:
        typer.echo(f"{member['bank_id']:16} {member['role']:8} {member['name']}")
    typer.echo(
        f"quorums: approvals {data['approval_quorum']}, witnesses {data['witness_quorum']}; "
        f"contract {data['contract']['version']}"
    )


@app.command("member")
def member(
    bank: Annotated[str, typer.Option("--bank", help="This node's bank id.")],
    name: Annotated[str | None, typer.Option(help="The bank's display name.")] = None,
) -> None:
    """Print this bank's member document (public keys; keys created on first use)."""
    from flowbureau.config import get_settings
    from flowbureau.ledger.consortium import member_keys
    from flowbureau.ledger.embedded import keystore
    from flowbureau.ledger.membership import Member, Role

    keys = keystore(get_settings()).bank(bank)
    echo_json(Member(bank, name or bank, Role.BANK, member_keys(keys)).to_json())


@app.command("draft-genesis")
def draft_genesis(
    members: Annotated[list[Path], typer.Argument(help="Member documents (ledger member).")],
    quorum: Annotated[int | None, typer.Option(min=1, help="Default: a majority.")] = None,
) -> None:
    """Print the founding document for these members, for every founder to approve."""
    from flowbureau.ledger.membership import Member

    parsed = [Member.from_json(_read_json(path, "member document"), str(path)) for path in members]
    genesis = _ledger().draft_genesis(parsed, quorum=quorum)
    echo_json(genesis.to_json())


@app.command("approve")
def approve(
    document: Annotated[Path, typer.Argument(help="A genesis document or a proposal (JSON).")],
    bank: Annotated[str, typer.Option("--bank", help="The approving bank (this node).")],
) -> None:
    """Sign a genesis document or a proposal with this bank's key; print the approval.

    Approving a genesis also makes this node trust that log's key (its witness cosigns only it).
    """
    from flowbureau.config import get_settings
    from flowbureau.ledger.embedded import keystore
    from flowbureau.ledger.membership import Genesis, Proposal
    from flowbureau.ledger.nodes import trust_genesis

    settings = get_settings()
    data = _read_json(document, "document")
    signing = keystore(settings).bank(bank).signing
    if isinstance(data, dict) and "members" in data:
        genesis = Genesis.from_json(data)
        trust_genesis(settings, genesis)
        approval = genesis.approve(bank, signing)
    else:
        approval = Proposal.from_json(data).approve(bank, signing)
    echo_json(approval.to_json())


@app.command("found")
def found(
    genesis: Annotated[Path, typer.Argument(help="The genesis document.")],
    approvals: Annotated[list[Path], typer.Argument(help="Every founder's approval.")],
) -> None:
    """Append the approved genesis as entry 0 and print the trust policy."""
    from flowbureau.ledger.membership import Approval, Genesis

    document = Genesis.from_json(_read_json(genesis, "genesis document"))
    signed = [Approval.from_json(_read_json(p, "approval"), str(p)) for p in approvals]
    ledger = _ledger()
    ledger.found_with(document, signed)
    echo_json(ledger.keys().to_json())


@app.command("propose")
def propose(
    action: Annotated[
        str,
        typer.Argument(
            help="add_member, rotate_keys, revoke_member, upgrade_contract or set_quorum."
        ),
    ],
    args: Annotated[str, typer.Option("--args", help="The action's arguments as JSON.")],
) -> None:
    """Print a proposal for the current governance epoch, for members to approve."""
    from datetime import UTC, datetime

    from flowbureau.errors import InputError
    from flowbureau.ledger.membership import Action, Proposal

    try:
        chosen = Action(action)
        arguments = json.loads(args)
    except ValueError as exc:
        raise InputError(f"bad proposal: {exc}", field="action") from None
    log = _ledger().log
    proposal = Proposal(chosen, log.membership.epoch, arguments, datetime.now(UTC))
    echo_json(proposal.to_json())


@app.command("apply")
def apply(
    proposal: Annotated[Path, typer.Argument(help="The proposal.")],
    approvals: Annotated[list[Path], typer.Argument(help="Members' approvals (a quorum).")],
    possession: Annotated[
        Path | None,
        typer.Option(help="The new key holder's approval (adding a member, rotating keys)."),
    ] = None,
) -> None:
    """Append an approved proposal to the log."""
    from flowbureau.ledger.membership import Approval, Proposal

    document = Proposal.from_json(_read_json(proposal, "proposal"))
    signed = [Approval.from_json(_read_json(p, "approval"), str(p)) for p in approvals]
    proof = (
        None
        if possession is None
        else Approval.from_json(_read_json(possession, "approval"), str(possession)).signature
    )
    receipt = _ledger().apply(document, signed, proof)
    echo_json(receipt.to_json())


def audit_anchor(as_json: JsonOption = False) -> None:
    """Anchor the audit log's head in the consortium ledger (skipped when it has not moved)."""
    from flowbureau.config import get_settings
    from flowbureau.ledger.anchor import anchor_audit
    from flowbureau.storage.database import make_engine, session_factory

    settings = get_settings()
    ledger = _ledger()
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_factory(engine)() as session:
            receipt = anchor_audit(ledger, session)
    finally:
        engine.dispose()
    data = None if receipt is None else receipt.to_json()
    if as_json:
        echo_json({"anchored": data is not None, "receipt": data})
    elif receipt is None:
        typer.echo("audit head unchanged since the last anchor (or the audit log is empty)")
    else:
        typer.echo(f"audit head anchored as log entry {receipt.index}")


@node_app.command("serve")
def node_serve(
    bank: Annotated[str, typer.Option("--bank", help="This node's bank id.")],
    platform: Annotated[
        str | None,
        typer.Option(help="The platform's URL (env FLOWBUREAU_LEDGER__PLATFORM_URL)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8100,
) -> None:
    """Serve this bank's witness and contribution API with uvicorn."""
    import uvicorn

    from flowbureau.config import get_settings
    from flowbureau.errors import ConfigurationError
    from flowbureau.ledger.nodes import create_node_app

    settings = get_settings()
    url = platform or settings.ledger.platform_url
    if not url:
        raise ConfigurationError("give --platform URL or set FLOWBUREAU_LEDGER__PLATFORM_URL")
    app = create_node_app(settings, bank, url)
    typer.echo(f"bank node {bank} on http://{host}:{port} (platform {url})")
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="warning")


@node_app.command("contribute")
def node_contribute(
    paths: Annotated[list[Path], typer.Argument(help="Statement files or directories.")],
    bank: Annotated[str, typer.Option("--bank", help="This node's bank id.")],
    platform: Annotated[str | None, typer.Option(help="The platform's URL.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Read, clean and contribute statement files through the platform; print the receipts."""
    from flowbureau.config import get_settings
    from flowbureau.errors import ConfigurationError
    from flowbureau.ledger.nodes import NodeService, PlatformClient

    settings = get_settings()
    url = platform or settings.ledger.platform_url
    if not url:
        raise ConfigurationError("give --platform URL or set FLOWBUREAU_LEDGER__PLATFORM_URL")
    result = NodeService(settings, bank, PlatformClient(url)).contribute(paths)
    if as_json:
        echo_json(result)
        return
    report = result["ingest"]
    typer.echo(f"{report['new_records']} new records, {len(result['receipts'])} bundles accepted")
    for receipt in result["receipts"]:
        typer.echo(f"  seq {receipt['seq']}: log entry {receipt['index']}")


@platform_app.command("serve")
def platform_serve(
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="BANK=URL of a member's node (repeatable)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8090,
) -> None:
    """Serve the platform's ledger API (bundles in, proofs out) with uvicorn."""
    import uvicorn

    from flowbureau.errors import InputError
    from flowbureau.ledger.nodes import create_platform_app

    urls: dict[str, str] = {}
    for item in witness or []:
        bank_id, sep, url = item.partition("=")
        if not sep or not bank_id or not url:
            raise InputError(f"--witness {item!r} is not BANK=URL", field="witness")
        urls[bank_id] = url
    app = create_platform_app(witnesses=urls)
    typer.echo(f"platform on http://{host}:{port} ({len(urls)} remote witnesses)")
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="warning")
