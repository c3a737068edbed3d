"""The ``chatsessions`` command line: serve, migrate, users, keys, demo, import, export.

Every command reads ``CHATSESSIONS_DATABASE_URL`` and migrates on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import service as auth_service
from chatsessions.config import Settings, get_settings
from chatsessions.db import Database, migrate
from chatsessions.imports import cli as imports_cli
from chatsessions.timeutil import system_clock
from chatsessions.webhooks import cli as webhooks_cli

if TYPE_CHECKING:  # imported inside the commands that use them: they load the web stack
    from chatsessions import demo, transfer

T = TypeVar("T")

app = typer.Typer(
    help="chatsessions: chat sessions service (DM Champ-compatible API).", no_args_is_help=True
)
users_app = typer.Typer(help="Manage users (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_cli.app, name="webhooks")
app.command("import-chat")(imports_cli.import_chat)
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic's message names the variable
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def run_with_db(work: Callable[[Database], Awaitable[T]]) -> T:
    """Migrate, open the database, run ``work``, close."""
    settings = _settings()

    async def main() -> T:
        await migrate(settings)
        db = Database(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@app.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (safe to run from many processes at once)."""
    settings = _settings()
    asyncio.run(migrate(settings))
    err.print("[green]database is up to date[/green]")


@app.command("refigure")
def refigure_command() -> None:
    """Recompute every session's analytics figures from its messages (after a rolling
    upgrade from a version without them; see docs/operations.md)."""
    from chatsessions.sessions.store import refigure_all_sessions

    settings = _settings()

    async def main() -> int:
        await migrate(settings)
        db = Database(settings)
        try:
            return await db.run_write(refigure_all_sessions)
        finally:
            await db.dispose()

    count = asyncio.run(main())
    err.print(f"[green]figures recomputed for {count} sessions[/green]")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the HTTP API (migrates first)."""
    import uvicorn

    settings = _settings()
    asyncio.run(migrate(settings))
    uvicorn.run(
        "chatsessions.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        server_header=False,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@app.command("worker")
def worker_command() -> None:
    """Run webhook delivery and silence sweeps without serving HTTP (run as many as needed)."""
    webhooks_cli.run_worker()


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Option(help="the account's name")],
    timeout_minutes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=43200,
            help="session timeout in minutes [default: CHATSESSIONS_DEFAULT_TIMEOUT_MINUTES, 60]",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print {userId, apiKey} as JSON")
    ] = False,
) -> None:
    """Create a user and its first API key (the key is shown once)."""
    minutes = timeout_minutes or _settings().default_timeout_minutes

    async def work(db: Database) -> auth_service.NewUser:
        async def tx(conn: AsyncConnection) -> auth_service.NewUser:
            return await auth_service.create_user(
                conn, name=name, timeout_minutes=minutes, now_ms=system_clock()
            )

        return await db.run_write(tx)

    user = run_with_db(work)
    if json_output:
        sys.stdout.write(
            orjson.dumps({"userId": user.user_id, "apiKey": user.api_key}).decode() + "\n"
        )
    else:
        typer.echo(f"userId: {user.user_id}")
        typer.echo(f"apiKey: {user.api_key}  (shown once: store it now)")


@keys_app.command("create")
def keys_create(
    user_id: Annotated[str, typer.Option("--user-id", help="the user to create a key for")],
    json_output: Annotated[
        bool, typer.Option("--json", help="print {userId, apiKey} as JSON")
    ] = False,
) -> None:
    """Create another API key for a user."""

    async def work(db: Database) -> str | None:
        async def tx(conn: AsyncConnection) -> str | None:
            from chatsessions.auth import store

            if not await store.user_exists(conn, user_id):
                return None
            return await auth_service.create_key(conn, user_id=user_id, now_ms=system_clock())

        return await db.run_write(tx)

    key = run_with_db(work)
    if key is None:
        err.print("[red]no such user[/red]")
        raise typer.Exit(1)
    if json_output:
        sys.stdout.write(orjson.dumps({"userId": user_id, "apiKey": key}).decode() + "\n")
    else:
        typer.echo(f"apiKey: {key}  (shown once: store it now)")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="the API key (csk_…) or its id")],
) -> None:
    """Revoke an API key; it fails from the next request on."""

    async def work(db: Database) -> bool:
        async def tx(conn: AsyncConnection) -> bool:
            return await auth_service.revoke_key(conn, api_key_or_id=key, now_ms=system_clock())

        return await db.run_write(tx)

    if not run_with_db(work):
        err.print("[red]no such active key[/red]")
        raise typer.Exit(1)
    err.print("[green]key revoked[/green]")


def _progress() -> Progress:
    """A progress bar on stderr (stdout stays clean for what the command prints)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


@app.command("demo")
def demo_command(
    if_missing: Annotated[
        bool,
        typer.Option("--if-missing", help="keep the demo tenant already loaded, if its key works"),
    ] = False,
    host: Annotated[str, typer.Option(help="host for the printed curl line")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port for the printed curl line")] = 8000,
    seed: Annotated[
        int, typer.Option(help="random seed of the demo data")
    ] = 20261126,  # demo.DEFAULT_SEED
) -> None:
    """Load a realistic demo tenant (50 contacts, a week of chats) and print its key."""
    from chatsessions import demo

    async def work(db: Database) -> tuple[demo.DemoTenant, demo.DemoStats, bool, Path]:
        path = demo.demo_file_path(db.settings)
        tenant = await demo.existing_demo(db, path) if if_missing else None
        loaded = tenant is None
        if tenant is None:
            with _progress() as progress:
                task = progress.add_task("loading demo tenant", total=None)
                tenant = await demo.load_demo(
                    db,
                    seed=seed,
                    on_start=lambda total: progress.update(task, total=total),
                    on_progress=lambda n: progress.advance(task, n),
                )
            demo.write_demo_file(path, tenant)
        stats = await demo.demo_stats(db, tenant.user_id, now_ms=system_clock())
        return tenant, stats, loaded, path

    tenant, stats, loaded, path = run_with_db(work)
    if not loaded:
        err.print(
            f"[dim]demo tenant already loaded ({path}); run `chatsessions demo` "
            "without --if-missing to load another[/dim]",
            soft_wrap=True,
        )
    typer.echo(
        f"Demo tenant ready: {stats.contacts} contacts, {stats.messages} messages, "
        f"{stats.sessions} sessions ({stats.open_now} open now)"
    )
    typer.echo(f"  userId: {tenant.user_id}")
    typer.echo(f"  apiKey: {tenant.api_key}  (also in {path})")
    typer.echo("Try:")
    typer.echo(f"  export KEY={tenant.api_key}")
    typer.echo(f"  {demo.curl_line(tenant.api_key, host=host, port=port)}")
    typer.echo(f"Console: {demo.console_url(host=host, port=port)}  (sign in with the apiKey)")


@app.command("export")
def export_command(
    user_id: Annotated[
        str | None, typer.Option("--user-id", help="export this user only (default: every user)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write to this file (default: stdout)")
    ] = None,
) -> None:
    """Export contacts and messages as JSON Lines ({"kind": "contact"|"message", …})."""
    from chatsessions import transfer

    async def work(db: Database) -> transfer.ExportStats:
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(out.open("wb")) if out is not None else sys.stdout.buffer
            progress = stack.enter_context(_progress()) if out is not None else None
            task = progress.add_task("exporting", total=None) if progress is not None else None

            def on_start(total: int) -> None:
                if progress is not None and task is not None:
                    progress.update(task, total=total)

            def on_progress(n: int) -> None:
                if progress is not None and task is not None:
                    progress.advance(task, n)

            stats = await transfer.export_jsonl(
                db, user_id=user_id, write=sink.write, on_start=on_start, on_progress=on_progress
            )
            sink.flush()
            return stats

    try:
        stats = run_with_db(work)
    except LookupError:
        err.print("[red]no such user[/red]")
        raise typer.Exit(1) from None
    err.print(
        f"exported {stats.contacts} contacts and {stats.messages} messages "
        f"of {stats.users} user(s)" + (f" to {out}" if out is not None else "")
    )


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="a JSON Lines file, as written by export")],
    user_id: Annotated[str, typer.Option("--user-id", help="the user to import into")],
) -> None:
    """Import contacts and messages (JSON Lines) into a user; safe to run again."""
    from chatsessions import transfer

    if not file.is_file():
        err.print(f"[red]no such file: {file}[/red]")
        raise typer.Exit(2)

    async def work(db: Database) -> transfer.ImportStats:
        with _progress() as progress:
            task = progress.add_task("importing", total=None)
            return await transfer.import_jsonl(
                db,
                user_id=user_id,
                path=file,
                on_start=lambda total: progress.update(task, total=total),
                on_progress=lambda n: progress.advance(task, n),
            )

    try:
        stats = run_with_db(work)
    except LookupError:
        err.print("[red]no such user[/red]")
        raise typer.Exit(1) from None
    except transfer.ImportFileError as exc:
        err.print("[red]nothing imported: the file has problems[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    typer.echo(
        f"contacts: {stats.contacts_created} created, {stats.contacts_matched} matched existing; "
        f"messages: {stats.messages_stored} stored, "
        f"{stats.messages_duplicate} already present (same externalId)"
    )
    if stats.skipped_lines:
        err.print(f"skipped {stats.skipped_lines} line(s) of another kind")
    if stats.without_external_id:
        err.print(
            f"[yellow]{stats.without_external_id} message(s) had no externalId: importing this "
            "file again would store them again[/yellow]"
        )


@app.command("backup")
def backup_command(
    dest: Annotated[Path, typer.Argument(help="file to write the SQLite backup to")],
) -> None:
    """Write a consistent copy of the SQLite database while it is in use.

    Uses SQLite's online backup, which copies committed data only (the ``-wal`` file
    included). For PostgreSQL use ``pg_dump`` (see docs/operations.md).
    """
    import sqlite3

    from sqlalchemy.engine import make_url

    settings = _settings()
    if not settings.is_sqlite:
        err.print(
            "[red]backup copies the embedded SQLite database;[/red] for PostgreSQL run "
            'pg_dump --format=custom --file=backup.dump "$CHATSESSIONS_DATABASE_URL"'
        )
        raise typer.Exit(2)
    asyncio.run(migrate(settings))
    source_path = make_url(settings.async_database_url).database or ""
    if dest.exists():
        err.print(f"[red]{dest} exists; choose a new file[/red]")
        raise typer.Exit(1)
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(dest)
    try:
        with _progress() as progress:
            task = progress.add_task("backup", total=None)

            def step(_status: int, remaining: int, total: int) -> None:
                progress.update(task, total=total, completed=total - remaining)

            source.backup(target, pages=1024, progress=step)
    finally:
        target.close()
        source.close()
    err.print(f"[green]backup written to {dest}[/green]")


if __name__ == "__main__":  # pragma: no cover
    app()
