"""``chatsessions import-chat`` run as a user runs it (a subprocess), on both backends."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from chatsessions.config import Settings
from tests.conftest import Tenant
from tests.imports.helpers import FIXTURES
from tests.imports.test_api import contact_messages, stored_count

_SCRIPT = Path(sys.executable).with_name("chatsessions")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "chatsessions.cli"]


def _run(
    db_url: str, args: tuple[str, ...], cwd: Path, expect: int
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSESSIONS_")}
    env["CHATSESSIONS_DATABASE_URL"] = db_url
    proc = subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


async def cli(
    db_url: str, *args: str, cwd: Path, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run ``chatsessions ARGS`` against ``db_url`` in a subprocess; assert its exit status."""
    return await asyncio.to_thread(_run, db_url, args, cwd, expect)


async def test_import_chat_zip_then_again_then_dry_run(
    backend_settings: Settings, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    url = backend_settings.database_url
    export = tmp_path / "WhatsApp Chat - Layla Haddad.zip"
    with zipfile.ZipFile(export, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(FIXTURES / "whatsapp_ios_dmy_24h.txt", "_chat.txt")
    args = [
        "import-chat",
        str(export),
        "--format",
        "whatsapp",
        "--user-id",
        tenant.user_id,
        "--me",
        "Corner Shop",
    ]
    first = await cli(url, *args, "--tz", "America/New_York", cwd=tmp_path)
    assert "5 messages stored, 0 already present" in first.stdout
    assert "America/New_York" in first.stderr and "date order dmy (detected)" in first.stderr
    contact_id = first.stdout.split()[1]
    messages = await contact_messages(client, tenant, contact_id)
    assert messages[0]["timestamp"] == "2023-01-15T15:00:00.000Z"  # 10:00 in New York (UTC-5)
    again = await cli(url, *args, "--tz", "America/New_York", cwd=tmp_path)
    assert "0 messages stored, 5 already present" in again.stdout
    dry = await cli(url, *args, "--tz", "America/New_York", "--dry-run", cwd=tmp_path)
    assert "dry run: would store up to 5 messages" in dry.stdout
    assert "2023-01-15T15:00:00.000Z  inbound   text" in dry.stdout
    assert await stored_count(client, tenant) == 5


async def test_import_chat_meta_parts_and_errors(
    backend_settings: Settings, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    url = backend_settings.database_url
    base = ["--user-id", tenant.user_id, "--me", "Corner Shop"]
    parts = [str(FIXTURES / "meta_message_1.json"), str(FIXTURES / "meta_message_2.json")]
    done = await cli(url, "import-chat", *parts, "--format", "messenger", *base, cwd=tmp_path)
    assert "6 messages stored" in done.stdout and "1 notices skipped" in done.stdout
    ambiguous = await cli(
        url,
        "import-chat",
        str(FIXTURES / "whatsapp_ambiguous.txt"),
        "--format",
        "whatsapp",
        *base,
        cwd=tmp_path,
        expect=2,
    )
    assert "nothing imported: --date-order:" in ambiguous.stderr
    broken = tmp_path / "chat.txt"
    broken.write_bytes((FIXTURES / "whatsapp_android_dmy_24h.txt").read_bytes() + b"\xff\xfe\n")
    bad = await cli(
        url, "import-chat", str(broken), "--format", "whatsapp", *base, cwd=tmp_path, expect=1
    )
    assert f"nothing imported: {broken}, line 12: is not UTF-8 text" in bad.stderr
    unknown = await cli(
        url, "import-chat", str(broken), "--format", "icq", *base, cwd=tmp_path, expect=2
    )
    assert (
        "--format: must be one of whatsapp, telegram, signal, instagram, messenger"
        in unknown.stderr
    )
    assert await stored_count(client, tenant) == 6
