"""The ``chatsessions`` command line, run the way a user runs it: one process per command.

Each test points ``CHATSESSIONS_DATABASE_URL`` at its own database (a SQLite file in a
temporary directory; one fresh PostgreSQL database), then checks what the command printed
and what the HTTP API (the real app, in process) serves from that database afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database

_SCRIPT = Path(sys.executable).with_name("chatsessions")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "chatsessions.cli"]
READY_RE = re.compile(
    r"^Demo tenant ready: (\d+) contacts, (\d+) messages, (\d+) sessions \((\d+) open now\)$",
    re.MULTILINE,
)
CURL_RE = re.compile(r"curl .*chat-sessions/recent.*")
KEY_RE = re.compile(r"^csk_[0-9A-Za-z]{40}$")
ID_RE = re.compile(r"^[0-9A-Za-z]{20}$")
ALL_TIME = "hours=876000&limit=1000"


def run_cli(
    db_url: str, *args: str, cwd: Path, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run ``chatsessions ARGS`` against ``db_url``; assert its exit status."""
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
    """:func:`run_cli` from an async test."""
    return await asyncio.to_thread(run_cli, db_url, *args, cwd=cwd, expect=expect)


@asynccontextmanager
async def api(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real app serving ``db_url``."""
    settings = Settings(database_url=db_url)
    db = Database(settings)
    app = create_app(settings, database=db)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await db.dispose()


async def all_sessions(
    client: httpx.AsyncClient, key: str, query: str = ""
) -> list[dict[str, Any]]:
    """Every session of the key's user, following ``next_cursor``."""
    url = f"/v1/chat-sessions/recent?{ALL_TIME}{query}"
    sessions: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = await client.get(
            url + (f"&cursor={cursor}" if cursor else ""), headers={"X-API-Key": key}
        )
        assert r.status_code == 200, r.text
        sessions.extend(r.json()["sessions"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return sessions


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'data' / 'chatsessions.db'}"


def parse_json_line(stdout: str) -> dict[str, str]:
    """The one JSON object a ``--json`` command prints, and nothing else."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, repr(stdout)
    data = json.loads(stdout)
    assert set(data) == {"userId", "apiKey"}
    assert ID_RE.match(data["userId"]) and KEY_RE.match(data["apiKey"])
    return dict(data)


@pytest.fixture(params=BACKENDS)
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL of each backend (nothing migrated: the CLI does it)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


async def test_users_create_json_prints_exactly_the_credentials(
    any_db: str, tmp_path: Path
) -> None:
    proc = await cli(
        any_db,
        "users",
        "create",
        "--name",
        "Acme",
        "--timeout-minutes",
        "15",
        "--json",
        cwd=tmp_path,
    )
    creds = parse_json_line(proc.stdout)
    async with api(any_db) as client:
        r = await client.get("/v1/settings", headers={"X-API-Key": creds["apiKey"]})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["sessionTimeoutMinutes"] == 15
        r = await client.get(f"/v1/chat-sessions/recent?hours=1&userId={creds['userId']}")
        assert r.status_code == 200 and r.json()["count"] == 0


async def test_keys_create_and_revoke(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first = parse_json_line(
        (await cli(url, "users", "create", "--name", "Acme", "--json", cwd=tmp_path)).stdout
    )
    user_id = first["userId"]
    second = parse_json_line(
        (await cli(url, "keys", "create", "--user-id", user_id, "--json", cwd=tmp_path)).stdout
    )
    assert second["userId"] == user_id and second["apiKey"] != first["apiKey"]
    recent = "/v1/chat-sessions/recent?hours=1"
    async with api(url) as client:
        for key in (first["apiKey"], second["apiKey"]):
            assert (await client.get(recent, headers={"X-API-Key": key})).status_code == 200

        await cli(url, "keys", "revoke", second["apiKey"], cwd=tmp_path)
        r = await client.get(recent, headers={"Authorization": f"Bearer {second['apiKey']}"})
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert (await client.get(recent, headers={"X-API-Key": first["apiKey"]})).status_code == 200

    again = await cli(url, "keys", "revoke", second["apiKey"], cwd=tmp_path, expect=1)
    assert "no such active key" in again.stderr
    unknown = await cli(url, "keys", "create", "--user-id", "A" * 20, cwd=tmp_path, expect=1)
    assert "no such user" in unknown.stderr and unknown.stdout == ""


@dataclass
class Demo:
    """A database holding the demo tenant, and what ``demo`` printed."""

    url: str
    directory: Path
    stdout: str
    user_id: str
    api_key: str
    contacts: int
    messages: int
    sessions: int
    open_now: int


def _parse_demo_output(stdout: str) -> tuple[int, int, int, int, str]:
    ready = READY_RE.search(stdout)
    assert ready, stdout
    [curl] = CURL_RE.findall(stdout)
    assert "`" not in curl
    key = shlex.split(curl)[-1].removeprefix("X-API-Key: ")
    assert KEY_RE.match(key), curl
    contacts, messages, sessions, open_now = (int(g) for g in ready.groups())
    return contacts, messages, sessions, open_now, key


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """``chatsessions demo --if-missing`` on a fresh SQLite database (loaded once per module)."""
    directory = tmp_path_factory.mktemp("demo")
    url = sqlite_url(directory)
    proc = run_cli(url, "demo", "--if-missing", "--port", "8765", cwd=directory)
    contacts, messages, sessions, open_now, key = _parse_demo_output(proc.stdout)
    saved = json.loads((directory / "data" / "demo-tenant.json").read_text())
    return Demo(
        url, directory, proc.stdout, saved["userId"], key, contacts, messages, sessions, open_now
    )


async def test_demo_prints_a_curl_line_that_works(demo_db: Demo) -> None:
    [curl] = CURL_RE.findall(demo_db.stdout)
    argv = shlex.split(curl)
    assert argv[:2] == ["curl", "-s"] and argv[3] == "-H"
    target = urlsplit(argv[2])
    assert (target.hostname, target.port) == ("127.0.0.1", 8765)
    name, _, value = argv[4].partition(": ")
    async with api(demo_db.url) as client:
        r = await client.get(f"{target.path}?{target.query}", headers={name: value})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 5


async def test_demo_prints_the_console_url(demo_db: Demo) -> None:
    assert "Console: http://127.0.0.1:8765/console  (sign in with the apiKey)" in demo_db.stdout


async def test_demo_loads_a_realistic_tenant(demo_db: Demo) -> None:
    assert demo_db.contacts == 50 and demo_db.messages > 500 and demo_db.sessions > 100
    assert demo_db.open_now > 0
    saved = demo_db.directory / "data" / "demo-tenant.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"userId": demo_db.user_id, "apiKey": demo_db.api_key}

    async with api(demo_db.url) as client:
        r = await client.get(
            "/v1/chat-sessions/recent?hours=1&status=ChatSessionOpened",
            headers={"X-API-Key": demo_db.api_key},
        )
        assert r.status_code == 200, r.text
        open_now = r.json()["sessions"]
        assert len(open_now) == demo_db.open_now
        assert {s["status"] for s in open_now} == {"ChatSessionOpened"}

        sessions = await all_sessions(
            client, demo_db.api_key, "&includeMessages=true&messageLimit=1000"
        )
    assert len(sessions) == demo_db.sessions
    assert sum(s["message_count"] for s in sessions) == demo_db.messages
    per_contact: dict[str, int] = {}
    for s in sessions:
        per_contact[s["contact_id"]] = per_contact.get(s["contact_id"], 0) + 1
    assert len(per_contact) == 50 and min(per_contact.values()) >= 2
    reasons = [s["closed_reason"] for s in sessions]
    assert reasons.count("closed") == 2 and reasons.count("inactivity") > 100
    assert {s["channel"] for s in sessions} == {"whatsapp", "instagram", "sms", "widget", "custom"}
    assert all(s["contact_phone"] is None or s["contact_phone"].startswith("+") for s in sessions)
    assert any(s["contact_email"] for s in sessions)
    messages = [m for s in sessions for m in s["messages"]]
    assert {m["direction"] for m in messages} == {"inbound", "outbound"}
    assert {"user", "assistant", "agent"} <= {m["role"] for m in messages}
    media = [m for m in messages if m["type"] == "media"]
    assert media and all(m["media_url"].startswith("https://") for m in media)
    assert any(m["type"] == "tool_use" for m in messages)
    assert all(m["content"] for m in messages)


async def test_demo_if_missing_does_not_load_again(demo_db: Demo) -> None:
    proc = await cli(demo_db.url, "demo", "--if-missing", "--port", "8765", cwd=demo_db.directory)
    contacts, messages, sessions, _open, key = _parse_demo_output(proc.stdout)
    assert key == demo_db.api_key
    assert (contacts, messages, sessions) == (demo_db.contacts, demo_db.messages, demo_db.sessions)
    async with api(demo_db.url) as client:
        assert len(await all_sessions(client, demo_db.api_key)) == demo_db.sessions


def _span_key(s: dict[str, Any]) -> tuple[Any, ...]:
    return (
        s["contact_phone"],
        s["contact_email"],
        s["channel"],
        s["start_date_time"],
        s["last_message_date_time"],
        s["message_count"],
        s["inbound_count"],
    )


async def test_export_then_import_into_another_user_round_trips(
    demo_db: Demo, tmp_path: Path
) -> None:
    url, cwd = demo_db.url, demo_db.directory
    exported = tmp_path / "demo.jsonl"
    await cli(url, "export", "--user-id", demo_db.user_id, "--out", str(exported), cwd=cwd)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds.count("contact") == 50 and kinds.count("message") == demo_db.messages
    assert kinds.index("message") == 50  # contacts first

    target = parse_json_line(
        (await cli(url, "users", "create", "--name", "Copy", "--json", cwd=cwd)).stdout
    )
    proc = await cli(url, "import", str(exported), "--user-id", target["userId"], cwd=cwd)
    assert f"{demo_db.messages} stored, 0 already present" in proc.stdout
    async with api(url) as client:
        original = await all_sessions(client, demo_db.api_key)
        copied = await all_sessions(client, target["apiKey"])
        assert sorted(map(_span_key, copied), key=repr) == sorted(
            map(_span_key, original), key=repr
        )

        again = await cli(url, "import", str(exported), "--user-id", target["userId"], cwd=cwd)
        assert "0 created, 50 matched" in again.stdout
        assert f"0 stored, {demo_db.messages} already present" in again.stdout
        assert len(await all_sessions(client, target["apiKey"])) == len(original)

    everything = await cli(url, "export", cwd=cwd)
    users = {json.loads(line)["userId"] for line in everything.stdout.splitlines()}
    assert {demo_db.user_id, target["userId"]} <= users


async def test_import_of_a_bad_file_names_the_line_and_writes_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    user = parse_json_line(
        (await cli(url, "users", "create", "--name", "Acme", "--json", cwd=tmp_path)).stdout
    )
    bad = tmp_path / "bad.jsonl"
    rows = [
        {"kind": "contact", "contactId": "c1", "phoneNumber": "+15551230000", "firstName": "Jo"},
        {
            "kind": "message",
            "contactId": "c1",
            "direction": "inbound",
            "content": "hi",
            "timestamp": "2026-11-20T10:00:00Z",
            "externalId": "e1",
        },
        {
            "kind": "message",
            "contactId": "c1",
            "direction": "inbound",
            "content": "naive",
            "timestamp": "2026-11-20T10:05:00",
            "externalId": "e2",
        },
    ]
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows))
    proc = await cli(url, "import", str(bad), "--user-id", user["userId"], cwd=tmp_path, expect=1)
    assert "line 3: timestamp" in proc.stderr
    async with api(url) as client:
        r = await client.get(
            "/v1/contacts?phoneNumber=%2B15551230000", headers={"X-API-Key": user["apiKey"]}
        )
        assert r.status_code == 404, r.text


def test_default_timeout_setting_applies_to_new_users(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/timeout.db"
    env = {
        **os.environ,
        "CHATSESSIONS_DATABASE_URL": url,
        "CHATSESSIONS_DEFAULT_TIMEOUT_MINUTES": "15",
    }
    out = subprocess.run(
        [sys.executable, "-m", "chatsessions.cli", "users", "create", "--name", "t", "--json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    key = json.loads(out)["apiKey"]
    settings = Settings(database_url=url)

    async def read() -> int:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/v1/settings", headers={"X-API-Key": key})
        await app.state.db.dispose()
        return int(r.json()["data"]["sessionTimeoutMinutes"])

    assert asyncio.run(read()) == 15


def test_in_memory_sqlite_is_refused_with_a_clear_message() -> None:
    env = {**os.environ, "CHATSESSIONS_DATABASE_URL": "sqlite:///:memory:"}
    done = subprocess.run(
        [sys.executable, "-m", "chatsessions.cli", "migrate"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert b"CHATSESSIONS_DATABASE_URL" in done.stderr
    assert b"Traceback" not in done.stderr


def test_backup_writes_a_consistent_copy_of_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/live.db"
    env = {**os.environ, "CHATSESSIONS_DATABASE_URL": url}

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "chatsessions.cli", *args],
            env=env,
            capture_output=True,
            timeout=120,
        )

    user = json.loads(cli("users", "create", "--name", "b", "--json").stdout)
    copy = tmp_path / "copy.db"
    done = cli("backup", str(copy))
    assert done.returncode == 0, done.stderr
    # The copy is a working database holding the user (its key authenticates there).
    settings = Settings(database_url=f"sqlite:///{copy}")

    async def check() -> int:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/v1/settings", headers={"X-API-Key": user["apiKey"]})
        await app.state.db.dispose()
        return r.status_code

    assert asyncio.run(check()) == 200
    assert cli("backup", str(copy)).returncode == 1  # never overwrites
