"""``chatsessions webhooks …`` and ``chatsessions worker``: inspect deliveries, run the
background loops without serving HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from chatsessions.config import Settings, get_settings
from chatsessions.db import Database, migrate
from chatsessions.logging_setup import configure_logging
from chatsessions.timeutil import format_ms
from chatsessions.webhooks import store

__all__ = ["app", "run_worker"]

app = typer.Typer(help="Inspect webhook endpoints and deliveries.", no_args_is_help=True)
err = Console(stderr=True)
log = logging.getLogger("chatsessions.webhooks")


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic's message names the variable
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("deliveries")
def deliveries(
    user_id: Annotated[str, typer.Option("--user-id", help="the user whose deliveries to show")],
    webhook_id: Annotated[
        str | None, typer.Option("--webhook-id", help="only this endpoint's deliveries")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="only pending, delivered or failed ones")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="newest N")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="JSON Lines on stdout")] = False,
) -> None:
    """Show the newest deliveries of a user (newest first) and a count by status."""
    if status is not None and status not in (store.PENDING, store.DELIVERED, store.FAILED):
        err.print("[red]--status must be pending, delivered or failed[/red]")
        raise typer.Exit(2)
    settings = _settings()

    async def main() -> tuple[list[store.UserDelivery], dict[str, int]]:
        await migrate(settings)
        db = Database(settings)
        try:
            async with db.read() as conn:
                rows = await store.list_user_deliveries(
                    conn, user_id=user_id, endpoint_id=webhook_id, status=status, limit=limit
                )
                counts = await store.count_user_deliveries(
                    conn, user_id=user_id, endpoint_id=webhook_id
                )
            return rows, counts
        finally:
            await db.dispose()

    rows, counts = asyncio.run(main())
    if json_output:
        for row in rows:
            sys.stdout.write(orjson.dumps(_row_json(row)).decode() + "\n")
        return
    table = Table("createdAt", "webhookId", "eventId", "type", "status", "attempts", "code",
                  "nextAttemptAt", "lastError")  # fmt: skip
    for row in rows:
        table.add_row(
            format_ms(row.created_at_ms),
            row.endpoint_id,
            row.event_id,
            row.type,
            row.status,
            str(row.attempts),
            "" if row.last_status_code is None else str(row.last_status_code),
            format_ms(row.next_attempt_ms) or "",
            row.last_error or "",
        )
    Console().print(table)
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("pending", "delivered", "failed"))
    err.print(f"{summary} in all" + (f" for webhook {webhook_id}" if webhook_id else ""))


def _row_json(row: store.UserDelivery) -> dict[str, object]:
    return {
        "webhookId": row.endpoint_id,
        "eventId": row.event_id,
        "type": row.type,
        "status": row.status,
        "attempts": row.attempts,
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "nextAttemptAt": format_ms(row.next_attempt_ms),
        "createdAt": format_ms(row.created_at_ms),
    }


def run_worker() -> None:
    """Migrate, then run webhook delivery and silence sweeps until SIGINT/SIGTERM."""
    from chatsessions.webhooks.worker import Background  # loads httpx, metrics

    settings = _settings()
    configure_logging(settings.log_level)

    async def main() -> None:
        await migrate(settings)
        db = Database(settings)
        background = Background(db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await background.start()
        log.info("webhook worker running")
        try:
            await stop.wait()
        finally:
            await background.stop()
            await db.dispose()

    asyncio.run(main())
