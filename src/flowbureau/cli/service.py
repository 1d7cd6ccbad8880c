"""CLI adapters of the platform service: ``serve``, ``admin ...``, ``audit verify``, ``db ...``.

Each command builds the service context from the settings and calls the same domain functions
as the HTTP routes. Secrets (API keys) are printed once; ``--json`` prints one JSON object for
scripts. Heavy imports stay inside the commands so ``flowbureau --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowbureau.cli.output import echo_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from flowbureau.service.context import ServiceContext

admin_app = typer.Typer(
    help="Create institutions, API keys and staff users (operators).", no_args_is_help=True
)
audit_app = typer.Typer(help="Check the audit log.", no_args_is_help=True)
db_app = typer.Typer(help="Service database migrations.", no_args_is_help=True)

DEFAULT_SCOPES = "view_score,view_report,view_transactions"

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@contextmanager
def _service() -> Iterator[tuple[ServiceContext, Session]]:
    """The service context and one unit of work (committed when the command succeeds)."""
    from flowbureau.config import get_settings
    from flowbureau.service.app import prepare_database
    from flowbureau.service.context import build_context
    from flowbureau.storage.database import session_scope

    settings = get_settings()
    prepare_database(settings)
    context = build_context(settings)
    try:
        with session_scope(context.sessions) as session:
            yield context, session
    finally:
        context.close()


def _emit(as_json: bool, data: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        echo_json(data)
    else:
        for line in lines:
            typer.echo(line)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (set FLOWBUREAU_REDIS_URL for >1).")
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) with uvicorn."""
    from flowbureau.config import get_settings
    from flowbureau.service.app import check_production_settings, prepare_database
    from flowbureau.service.server import serve as serve_api

    settings = get_settings()
    check_production_settings(settings)
    prepare_database(settings)  # once, before workers start
    if workers > 1 and not settings.redis_url:
        typer.echo(
            "warning: rate limits and SMS limits are per worker without FLOWBUREAU_REDIS_URL",
            err=True,
        )
    typer.echo(f"flowbureau API on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    serve_api(  # uvicorn, with TCP_NODELAY on the workers' shared socket (see the module)
        host=host, port=port, workers=workers, proxy_headers=settings.service.trust_forwarded_for
    )


@admin_app.command("create-institution")
def create_institution(
    name: Annotated[str, typer.Argument(help="The institution's name (unique).")],
    as_json: JsonOption = False,
) -> None:
    """Create an institution (lender) that enterprises can give consent to."""
    from flowbureau.service import accounts

    with _service() as (context, session):
        institution = accounts.create_institution(session, name=name, now=context.clock())
        data = {"id": institution.id, "name": institution.name}
    _emit(as_json, data, [f"institution {institution.name}: {institution.id}"])


def _split_scopes(values: list[str]) -> list[str]:
    return [s.strip() for value in values for s in value.split(",") if s.strip()]


@admin_app.command("create-api-key")
def create_api_key(
    institution: Annotated[str, typer.Argument(help="Institution id or exact name.")],
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes",
            help="Operation types, comma-separated or repeated: view_score, view_report, "
            f"view_transactions, export, ask (default {DEFAULT_SCOPES}).",
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="A note on what uses this key.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key for an institution; the key is printed once, only here."""
    from flowbureau.service import accounts, apikeys

    with _service() as (context, session):
        found = accounts.find_institution(session, institution)
        row, key = apikeys.create_api_key(
            session,
            institution_id=found.id,
            scopes=_split_scopes(scopes or [DEFAULT_SCOPES]),
            label=label,
            now=context.clock(),
        )
        data = {
            "key": key,
            "key_id": row.key_id,
            "institution_id": found.id,
            "scopes": row.scopes,
        }
    _emit(
        as_json,
        data,
        [
            f"API key {row.key_id} for {found.name} (scopes: {', '.join(row.scopes)})",
            key,
            "Store it now: it is not shown again (only its hash is kept).",
        ],
    )


@admin_app.command("rotate-api-key")
def rotate_api_key(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after fbk_).")],
    grace_minutes: Annotated[
        int, typer.Option(min=0, help="Minutes the old key keeps working.")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Replace a key by a new one with the same scopes; prints the new key once."""
    from datetime import timedelta

    from flowbureau.service import apikeys

    with _service() as (context, session):
        row, key = apikeys.rotate_api_key(
            session, key_id=key_id, now=context.clock(), grace=timedelta(minutes=grace_minutes)
        )
        data = {"key": key, "key_id": row.key_id, "replaces": key_id, "scopes": row.scopes}
    _emit(
        as_json,
        data,
        [f"API key {row.key_id} replaces {key_id}", key, "Store it now: it is not shown again."],
    )


@admin_app.command("revoke-api-key")
def revoke_api_key(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after fbk_).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key at once."""
    from flowbureau.service import apikeys

    with _service() as (context, session):
        row = apikeys.revoke_api_key(session, key_id=key_id, now=context.clock())
        data = {"key_id": row.key_id, "revoked_at": row.revoked_at}
    _emit(as_json, data, [f"API key {key_id} revoked"])


@admin_app.command("list-api-keys")
def list_api_keys(
    institution: Annotated[str, typer.Argument(help="Institution id or exact name.")],
    as_json: JsonOption = False,
) -> None:
    """An institution's keys (ids, scopes, state; never the keys)."""
    from flowbureau.service import accounts, apikeys

    with _service() as (context, session):
        found = accounts.find_institution(session, institution)
        now = context.clock()
        rows = [
            (k, apikeys.api_key_state(k, now))
            for k in apikeys.list_api_keys(session, institution_id=found.id)
        ]
    keys = [
        {
            "key_id": k.key_id,
            "scopes": k.scopes,
            "label": k.label,
            "created_at": k.created_at,
            "state": state,
        }
        for k, state in rows
    ]
    _emit(
        as_json,
        {"institution_id": found.id, "keys": keys},
        [f"{k.key_id}  {state:8} {','.join(k.scopes)}  {k.label or ''}" for k, state in rows],
    )


@admin_app.command("create-user")
def create_user(
    *,
    role: Annotated[str, typer.Option(help="analyst, operator or auditor.")],
    phone: Annotated[str, typer.Option(help="Mobile phone (sign-in name).")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="FLOWBUREAU_NEW_USER_PASSWORD",
            help="10-128 characters (prompted when not given).",
        ),
    ],
    institution: Annotated[
        str | None, typer.Option(help="Institution id or name (analysts only).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a staff user: an institution's analyst, an operator or an auditor."""
    from flowbureau.errors import InputError
    from flowbureau.service import accounts
    from flowbureau.service.identifiers import normalize_phone
    from flowbureau.service.models import Role

    try:
        chosen = Role(role)
    except ValueError:
        raise InputError(f"unknown role {role!r}", field="role") from None
    with _service() as (context, session):
        institution_id = (
            None if institution is None else accounts.find_institution(session, institution).id
        )
        user = accounts.create_staff_user(
            session,
            role=chosen,
            phone=normalize_phone(phone),
            password=password,
            institution_id=institution_id,
            display_name=name,
            vault=context.vault,
            passwords=context.passwords,
            now=context.clock(),
        )
        data = {"id": user.id, "role": user.role.value, "institution_id": user.institution_id}
    _emit(as_json, data, [f"{user.role.value} {user.id} created"])


@audit_app.command("verify")
def verify(as_json: JsonOption = False) -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first broken row."""
    from flowbureau.errors import IntegrityError
    from flowbureau.service import audit

    with _service() as (_context, session):
        result = audit.verify(session)
    data = {
        "ok": result.ok,
        "rows": result.rows,
        "head_seq": result.head_seq,
        "broken_seq": result.broken_seq,
        "problem": result.problem,
    }
    if not result.ok:
        if as_json:
            typer.echo(json.dumps(data))
        raise IntegrityError(f"audit log broken at row {result.broken_seq}: {result.problem}")
    _emit(as_json, data, [f"audit log intact: {result.rows} rows, chain and head agree"])


@db_app.command("upgrade")
def upgrade(
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it (for DBAs).")
    ] = False,
) -> None:
    """Migrate the service database to the newest revision."""
    from alembic import command

    from flowbureau.config import get_settings
    from flowbureau.storage.database import migration_config, upgrade_database

    url = get_settings().resolved_database_url
    if sql:
        command.upgrade(migration_config(url), "head", sql=True)
        return
    revision = upgrade_database(url)
    typer.echo(f"service database at revision {revision}")


@db_app.command("revision")
def revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the revision changes.")],
) -> None:
    """Draft a migration from the difference between the models and the newest revision."""
    import tempfile
    from pathlib import Path

    from alembic import command

    from flowbureau.storage.database import migration_config, upgrade_database

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'head.db'}"
        upgrade_database(url)
        script = command.revision(migration_config(url), message=message, autogenerate=True)
    path = getattr(script, "path", None)
    typer.echo(f"drafted {path}: review it before committing")
