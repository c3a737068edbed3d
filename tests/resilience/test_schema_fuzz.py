"""Schema fuzzing with schemathesis against our own /openapi.json on a real server:
positive and negative cases on every operation, with a valid key — no 5xx, every status
code and content type documented. Bounded here; `make resilience` runs it longer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _create_pg_database, _drop_pg_database
from tests.resilience.harness import FULL, Server, create_user

BACKENDS = ["sqlite", "postgresql"] if FULL else ["postgresql"]


@pytest.mark.parametrize("backend_name", BACKENDS)
async def test_fuzzing_finds_no_server_error(backend_name: str, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: `make test` installs it"
    pg_name = None
    if backend_name == "sqlite":
        url = f"sqlite:///{tmp_path}/fuzz.db"
    else:
        pg_name, url = await _create_pg_database()
    server = Server(url, tmp_path, CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE="true")
    try:
        _user, key = create_user(url)
        server.start()
        done = subprocess.run(
            [
                st,
                "run",
                f"{server.base_url}/openapi.json",
                "-H",
                f"X-API-Key: {key}",
                # A number of cases, not a duration: the same cases on any machine.
                "--max-examples",
                "25" if FULL else "6",
                "--seed",
                "20261126",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance",
                "--no-shrink",
            ],
            capture_output=True,
            timeout=900,
            cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1"},
        )
        output = done.stdout.decode(errors="replace")
        server_log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("serve-*.log"))
        assert " 500 " not in server_log and "Traceback" not in server_log, server_log[-3000:]
        assert done.returncode == 0, output[-6000:]
        assert "generated" in output  # the fuzzer really ran cases
        summary = [line for line in output.splitlines() if "generated" in line]
        print(f"\nfuzz[{backend_name}]: {summary[-1].strip()}; server 5xx: 0")
    finally:
        server.kill()
        if pg_name is not None:
            await _drop_pg_database(pg_name)
