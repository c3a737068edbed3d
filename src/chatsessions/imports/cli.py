"""``chatsessions import-chat``: import chat exports from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chatsessions.config import get_settings
from chatsessions.db import Database, migrate
from chatsessions.errors import ChatSessionsError, InvalidParameter
from chatsessions.imports.model import ImportFileError, Source
from chatsessions.imports.registry import FORMATS
from chatsessions.timeutil import format_ms, system_clock

if TYPE_CHECKING:  # imported when the command runs: they load the web stack
    from chatsessions.imports import service
    from chatsessions.imports.plan import Plan

__all__ = ["import_chat"]

err = Console(stderr=True)
_FLAGS = {
    "format": "--format",
    "me": "--me",
    "tz": "--tz",
    "dateOrder": "--date-order",
    "chat": "--chat",
    "contactPhone": "--contact-phone",
}
_SAMPLE = 10


def _fail(exc: ChatSessionsError) -> typer.Exit:
    """Print the error the way a command-line user reads it; the exit status to use."""
    if isinstance(exc, ImportFileError):
        where = f"{exc.file}, {exc.where}" if exc.where else exc.file
        err.print(
            f"[red]nothing imported:[/red] {escape(where)}: {escape(exc.problem)}", soft_wrap=True
        )
        return typer.Exit(1)
    if isinstance(exc, InvalidParameter) and exc.parameter in _FLAGS:
        problem = exc.message.removeprefix(f"{exc.parameter}: ")
        err.print(
            f"[red]nothing imported:[/red] {_FLAGS[exc.parameter]}: {escape(problem)}",
            soft_wrap=True,
        )
        return typer.Exit(2)
    err.print(f"[red]nothing imported:[/red] {escape(exc.message)}", soft_wrap=True)
    return typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )


def _describe(plan: Plan) -> None:
    order = plan.date_order or "—"
    how = " (given)" if plan.options.date_order or plan.fmt.date_order else " (detected)"
    err.print(
        f"{plan.fmt.name}: {plan.messages} messages ({plan.inbound} inbound from "
        f"{plan.contact or plan.contact_phone!r}, {plan.outbound} outbound from {plan.me!r}), "
        f"{plan.skipped} notices skipped",
        markup=False,
        soft_wrap=True,
    )
    if plan.date_order is not None:
        err.print(
            f"times read as wall clock in {plan.zone.key} (--tz); date order {order}{how}",
            markup=False,
        )
    else:
        err.print(f"times are absolute in {plan.fmt.name} exports (--tz not needed)", markup=False)
    assert plan.first_ms is not None and plan.last_ms is not None
    err.print(f"from {format_ms(plan.first_ms)} to {format_ms(plan.last_ms)}", markup=False)


def import_chat(
    files: Annotated[
        list[Path], typer.Argument(help="the export: one file, or the parts of one conversation")
    ],
    format: Annotated[str, typer.Option("--format", help=" | ".join(FORMATS))],
    user_id: Annotated[str, typer.Option("--user-id", help="the user to import into")],
    me: Annotated[
        str | None, typer.Option("--me", help="the business's author name (outbound)")
    ] = None,
    tz: Annotated[
        str, typer.Option("--tz", help="time zone of wall-clock times (text exports)")
    ] = "UTC",
    date_order: Annotated[
        str | None,
        typer.Option("--date-order", help="dmy | mdy | ymd, when the dates are ambiguous"),
    ] = None,
    chat: Annotated[
        str | None, typer.Option("--chat", help="the chat of a whole-account Telegram export")
    ] = None,
    contact_phone: Annotated[
        str | None, typer.Option("--contact-phone", help="find or create the contact by this phone")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="read and check, print, store nothing")
    ] = False,
) -> None:
    """Import chat history (WhatsApp, Telegram, Signal, Instagram, Messenger exports); safe to run again."""
    from chatsessions.imports import service

    for path in files:
        if not path.is_file():
            err.print(f"[red]no such file: {escape(str(path))}[/red]")
            raise typer.Exit(2)
    sources = [Source.from_path(str(p)) for p in files]
    options = service.ImportOptions(
        format=format, me=me, tz=tz, date_order=date_order, chat=chat, contact_phone=contact_phone
    )
    now = system_clock()
    try:
        with _progress() as progress:
            task = progress.add_task("reading", total=None)
            plan = service.prepare(
                sources, options, now_ms=now, on_read=lambda n: progress.update(task, completed=n)
            )
    except ChatSessionsError as exc:
        raise _fail(exc) from None
    _describe(plan)
    if dry_run:
        typer.echo(
            f"dry run: would store up to {plan.messages} messages for contact {plan.contact or plan.contact_phone!r}"
        )
        for i, (direction, kind, content, ts, _ext) in enumerate(service.rows(plan)):
            if i == _SAMPLE:
                typer.echo(f"… and {plan.messages - _SAMPLE} more")
                break
            preview = content if len(content) <= 60 else content[:59] + "…"
            typer.echo(f"  {format_ms(ts)}  {direction:8}  {kind:5}  {preview!r}")
        return
    result = _store(user_id, plan, now)
    typer.echo(
        f"contact {result.contact_id} ({plan.contact or plan.contact_phone}): "
        f"{result.messages} messages stored, {result.duplicates} already present; "
        f"{result.sessions} sessions; {plan.skipped} notices skipped"
    )


def _store(user_id: str, plan: Plan, now: int) -> service.ImportResult:
    from chatsessions.imports import service

    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names the variable
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None

    async def main() -> service.ImportResult:
        await migrate(settings)
        db = Database(settings)
        try:
            from chatsessions.auth import store as auth_store

            async with db.read() as conn:
                if not await auth_store.user_exists(conn, user_id):
                    raise InvalidParameter("userId", "no such user")
            with _progress() as progress:
                task = progress.add_task("storing", total=plan.messages)
                return await service.run_import(
                    db,
                    user_id=user_id,
                    plan=plan,
                    now_ms=now,
                    on_stored=lambda n: progress.advance(task, n),
                )
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except ChatSessionsError as exc:
        raise _fail(exc) from None
