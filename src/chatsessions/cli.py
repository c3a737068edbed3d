"""The ``chatsessions`` command line: serve, migrate, users, keys, demo, import, export.

Every command reads ``CHATSESSIONS_DATABASE_URL`` and migrates on first use.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import orjson
import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import service as auth_service
from chatsessions.config import Settings, get_settings
from chatsessions.db import Database, migrate
from chatsessions.timeutil import system_clock

T = TypeVar("T")

app = typer.Typer(help="chatsessions: chat sessions service (DM Champ-compatible API).", no_args_is_help=True)
users_app = typer.Typer(help="Manage users (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
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
        "chatsessions.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        server_header=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Option(help="the account's name")],
    timeout_minutes: Annotated[
        int, typer.Option(min=1, max=43200, help="session timeout in minutes")
    ] = 60,
    json_output: Annotated[bool, typer.Option("--json", help="print {userId, apiKey} as JSON")] = False,
) -> None:
    """Create a user and its first API key (the key is shown once)."""

    async def work(db: Database) -> auth_service.NewUser:
        async def tx(conn: AsyncConnection) -> auth_service.NewUser:
            return await auth_service.create_user(
                conn, name=name, timeout_minutes=timeout_minutes, now_ms=system_clock()
            )

        return await db.run_write(tx)

    user = run_with_db(work)
    if json_output:
        sys.stdout.write(orjson.dumps({"userId": user.user_id, "apiKey": user.api_key}).decode() + "\n")
    else:
        typer.echo(f"userId: {user.user_id}")
        typer.echo(f"apiKey: {user.api_key}  (shown once: store it now)")


@keys_app.command("create")
def keys_create(
    user_id: Annotated[str, typer.Option("--user-id", help="the user to create a key for")],
    json_output: Annotated[bool, typer.Option("--json", help="print {userId, apiKey} as JSON")] = False,
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


if __name__ == "__main__":  # pragma: no cover
    app()
