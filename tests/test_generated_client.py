"""A client generated from our OpenAPI document works: named after our operation ids, it
calls both DM Champ listings on a live server and parses every answer, errors included.

Client generators are how many users meet the API; a document whose operation ids are
FastAPI's defaults (``recent_sessions_v1_chat_sessions_recent_get``) or whose schemas do
not match the responses gives them a broken or unreadable client.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from chatsessions.app import create_app
from chatsessions.config import Settings
from tests.resilience.harness import Server, create_user

OPERATION_ID = re.compile(r"[a-z][a-zA-Z0-9]*")


def test_every_operation_has_a_readable_unique_operation_id(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/doc.db", secret_key="k"))
    seen: dict[str, str] = {}
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            op_id = op.get("operationId", "")
            assert OPERATION_ID.fullmatch(op_id), f"{method.upper()} {path}: {op_id!r}"
            assert op_id not in seen, f"{op_id} names {seen[op_id]} and {method} {path}"
            seen[op_id] = f"{method} {path}"
    assert seen["listRecentChatSessions"] == "get /v1/chat-sessions/recent"
    assert seen["listContactChatSessions"] == "get /v1/chat-sessions/{contactId}"
    assert seen["closeSession"] == "post /v1/sessions/{sessionId}/close"


def _generate(document: Path, out: Path) -> ModuleType:
    """Generate a client package from ``document`` and import it."""
    config = out.parent / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: what it writes is what we test
    generator = Path(sys.executable).parent / "openapi-python-client"
    done = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(out),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out.parent))
    try:
        return importlib.import_module(out.name)
    finally:
        sys.path.remove(str(out.parent))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{tmp}/live.db"
    _user, key = create_user(url)
    server = Server(url, tmp)
    server.start()
    try:
        yield server, key
    finally:
        server.kill()


def test_generated_client_calls_both_listings_and_parses_errors(live: Any, tmp_path: Path) -> None:
    server, key = live
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        document = tmp_path / "openapi.json"
        document.write_bytes(http.get("/openapi.json").content)
        r = http.post(
            "/v1/contacts",
            json={"phoneNumber": "+15550108080", "firstName": "Ada"},
            headers=headers,
        )
        contact_id = r.json()["data"]["contactId"]
        for text in ("Hi!", "Anyone there?"):
            r = http.post(
                "/v1/messages",
                json={"contactId": contact_id, "direction": "inbound", "content": text},
                headers=headers,
            )
            assert r.status_code == 201, r.text

    package = f"csclient_{tmp_path.name.replace('-', '_')}"
    client_pkg = _generate(document, tmp_path / package)
    api = importlib.import_module(f"{package}.api.chat_sessions")
    recent = importlib.import_module(f"{api.__name__}.list_recent_chat_sessions")
    of_contact = importlib.import_module(f"{api.__name__}.list_contact_chat_sessions")
    models = importlib.import_module(f"{package}.models")

    client = client_pkg.AuthenticatedClient(base_url=server.base_url, token=key)
    page = recent.sync(client=client, hours=24, include_messages=True, message_limit=10)
    assert isinstance(page, models.SessionListResponse), page
    assert page.success and page.count == 1 and page.next_cursor is None
    [session] = page.sessions
    assert session.contact_id == contact_id and session.contact_name == "Ada"
    assert [m.content for m in session.messages] == ["Hi!", "Anyone there?"]
    assert session.status.value == "ChatSessionOpened"

    mine = of_contact.sync(contact_id=contact_id, client=client)
    assert isinstance(mine, models.SessionListResponse), mine
    assert [s.session_id for s in mine.sessions] == [session.session_id]

    # Errors parse into the documented Error model: a bad parameter, an unknown contact,
    # and no credentials.
    bad = recent.sync(client=client, hours=24, status="Pending")
    assert isinstance(bad, models.Error) and bad.code.value == "invalid_parameter"
    assert "status" in bad.error
    missing = of_contact.sync(contact_id="A" * 20, client=client)
    assert isinstance(missing, models.Error) and missing.code.value == "not_found"
    anonymous = client_pkg.Client(base_url=server.base_url)
    denied = recent.sync(client=anonymous, hours=24)
    assert isinstance(denied, models.Error) and denied.code.value == "unauthorized"
