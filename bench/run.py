"""The load driver: scenarios against ``chatsessions serve``, floors, RSS, EXPLAIN.

    python bench/run.py --scale small [--duration 10] [--workers 2] [--servers]

Reads the tenant file written by ``bench/generate.py`` (``results/<scale>-tenant.json``),
starts ``chatsessions serve --workers N --port 8765`` on the bench database, and measures
each scenario with ``wrk --latency`` (Lua scripts in ``bench/lua/``) at concurrency 1 and
32, sampling the ``VmRSS`` of every server process all along. Then, in the same run, the
floors: (a) the service's own SQL for each listing, compiled from ``sessions/store.py``
and executed directly with asyncpg; (b) a bare ASGI app (``floor_app.py``) under the same
uvicorn settings returning a body of the recent response's size, driven by the same wrk
script; (c) the ingest transaction shape written directly with asyncpg, (c′) a set-based
batch transaction, (c″) the service's own three ingest statements (``messages/store.py``)
run directly with asyncpg. ``--servers`` adds the server comparison (uvicorn vs granian,
1–4 workers) on the recent scenario.

Writes ``results/<scale>-<UTC date>.json`` and regenerates ``docs/performance.md`` and
``docs/performance.png`` from the newest result of each scale (``bench/report.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "lua"
RESULTS = HERE / "results"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from generate import pg_dsn, tenant_file  # noqa: E402

RECENT = "/v1/chat-sessions/recent?hours=24&limit=100"
RECENT_MSGS = RECENT + "&includeMessages=true"


def log(text: str) -> None:
    """Progress to stderr."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


# -- processes ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def vm_rss_kb(pid: int) -> int | None:
    """``VmRSS`` of a process in kB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class RssSampler:
    """Samples ``VmRSS`` of every process of a server's tree twice a second."""

    def __init__(self, root_pid: int, label: str) -> None:
        self.root = root_pid
        self.label = label
        self.peak: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in process_tree(self.root):
                kb = vm_rss_kb(pid)
                if kb is not None:
                    self.peak[pid] = max(self.peak.get(pid, 0), kb)
                    self.last[pid] = kb
            self.samples += 1
            self._stop.wait(0.5)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Peak and final RSS (MB) per process; workers are the processes that serve."""
        workers = [p for p in self.peak if p != self.root] or [self.root]
        return {
            "label": self.label,
            "samples": self.samples,
            "processes": {
                str(p): {
                    "peak_mb": round(self.peak[p] / 1024, 1),
                    "last_mb": round(self.last.get(p, 0) / 1024, 1),
                    "role": "worker" if p in workers else "supervisor",
                }
                for p in self.peak
            },
            "worker_peak_mb": round(max(self.peak[p] for p in workers) / 1024, 1),
        }


def server_env(database_url: str) -> dict[str, str]:
    """The service's environment for the bench: its database, defaults otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSESSIONS_")}
    env["CHATSESSIONS_DATABASE_URL"] = database_url
    return env


def server_command(kind: str, workers: int) -> list[str]:
    """The command line of one server under test."""
    if kind == "uvicorn":
        return [
            str(VENV_BIN / "chatsessions"),
            "serve",
            "--port",
            str(PORT),
            "--workers",
            str(workers),
        ]
    if kind == "granian":
        return [
            str(VENV_BIN / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "info",
            # No access log: as `chatsessions serve` (CHATSESSIONS_ACCESS_LOG off).
            "chatsessions.app:create_served_app",
        ]
    if kind == "floor":
        # The same uvicorn settings as ``chatsessions serve`` (cli.py), on the bare app.
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "floor_app:create_app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-server-header",
            "--no-access-log",
            "--log-level",
            "info",
            "--timeout-graceful-shutdown",
            "30",
        ]
    raise ValueError(kind)


@contextmanager
def server(kind: str, workers: int, env: dict[str, str], label: str) -> Iterator[RssSampler]:
    """Start a server on port 8765, wait until it answers, sample its RSS, stop it."""
    log_path = RESULTS / f"server-{kind}.log"
    with open(log_path, "ab") as errlog:
        proc = subprocess.Popen(
            server_command(kind, workers),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        path = "/healthz" if kind != "floor" else "/"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode}; see {log_path}")
            try:
                if httpx.get(BASE + path, timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start in 60 s; see {log_path}")
            time.sleep(0.2)
        # Workers of a multi-process server come up one by one: give them a moment.
        time.sleep(1.0 if workers > 1 else 0.2)
        with RssSampler(proc.pid, label) as sampler:
            yield sampler
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=40)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- wrk ------------------------------------------------------------------------------------


def wrk(
    path: str, script: str, *, connections: int, duration: int, env: dict[str, str]
) -> dict[str, Any]:
    """Run wrk once (``--latency``) and return the summary its Lua ``done()`` wrote."""
    out = RESULTS / f"wrk-{os.getpid()}.json.tmp"
    out.unlink(missing_ok=True)
    threads = 1 if connections == 1 else 2
    cmd = [
        "wrk",
        "--latency",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA / script),
        BASE + path,
    ]
    full_env = {**os.environ, **env, "BENCH_OUT": str(out), "BENCH_LUA_DIR": str(LUA)}
    proc = subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    result["errors"] = sum(result[k] for k in result if k.startswith("errors_"))
    result["connections"] = connections
    return result


# -- paging ---------------------------------------------------------------------------------


def paging(api_key: str, sessions_wanted: int = 10_000, limit: int = 100) -> dict[str, Any]:
    """Page through ``sessions_wanted`` sessions (every session ever: hours=876000)."""
    times: list[float] = []
    seen = 0
    errors = 0
    url = f"{BASE}/v1/chat-sessions/recent?hours=876000&limit={limit}"
    t0 = time.perf_counter()
    with httpx.Client(headers={"X-API-Key": api_key}, timeout=30) as client:
        cursor = None
        while seen < sessions_wanted:
            t = time.perf_counter()
            r = client.get(url + (f"&cursor={cursor}" if cursor else ""))
            times.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                errors += 1
                break
            body = r.json()
            seen += body["count"]
            cursor = body["next_cursor"]
            if not cursor:
                break
    total = time.perf_counter() - t0
    return {
        "sessions": seen,
        "pages": len(times),
        "total_s": round(total, 3),
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "errors": errors,
    }


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


# -- floors ---------------------------------------------------------------------------------


class _NoRows:
    """An empty result (what a captured statement "returns")."""

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def first(self) -> None:
        return None

    def all(self) -> list[Any]:
        return []


class _CaptureDriver:
    """Stands in for the asyncpg connection under ``db.fetch_rows``: records SQL and args."""

    def __init__(self, capture: _Capture) -> None:
        self.capture = capture

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.capture.driver_statements.append((sql, list(args)))
        return []


class _Capture:
    """Stands in for a connection: records the statements a store function executes
    (through SQLAlchemy, or straight on the driver via ``db.fetch_rows``)."""

    def __init__(self) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        self.dialect = dialect()  # type: ignore[no-untyped-call]
        self.statements: list[tuple[Any, dict[str, Any] | None]] = []
        self.driver_statements: list[tuple[str, list[Any]]] = []
        self.driver_connection = _CaptureDriver(self)
        self.sync_connection = None  # db._pooled_connection then asks get_raw_connection

    async def execute(self, stmt: Any, params: dict[str, Any] | None = None, **kw: Any) -> _NoRows:
        self.statements.append((stmt, params))
        return _NoRows()

    async def get_raw_connection(self) -> _Capture:
        return self  # has .driver_connection, like SQLAlchemy's pooled connection


def compiled(stmt: Any, dialect: Any, given: dict[str, Any] | None = None) -> tuple[str, list[Any]]:
    """SQL text (as the service's asyncpg dialect renders it) and positional arguments."""
    if given:
        # Values passed at execution (text() statements): bind them before compiling.
        stmt = stmt.params(**given)
    comp = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = comp.construct_params()
    return comp.string, [params[name] for name in comp.positiontup]


async def service_statements(
    conn: asyncpg.Connection, tenant: dict[str, Any]
) -> dict[str, tuple[str, list[Any]]]:
    """The SQL behind each read scenario, compiled from the service's own store functions."""
    from chatsessions.auth import service as auth_service
    from chatsessions.auth import store as auth_store
    from chatsessions.contacts import store as contacts_store
    from chatsessions.sessions import store

    now = int(time.time() * 1000)
    user = tenant["user_id"]
    out: dict[str, tuple[str, list[Any]]] = {}

    async def capture(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, list[Any]]:
        cap = _Capture()
        await fn(cap, *args, **kwargs)
        if cap.driver_statements:
            return cap.driver_statements[0]
        return compiled(*cap.statements[0][:1], cap.dialect, cap.statements[0][1])

    out["auth: key by hash"] = await capture(
        auth_store.find_key_by_hash, auth_service.hash_key(tenant["api_key"])
    )

    async def listing(
        contact_id: str | None, hours: int | None, after: tuple[int, str] | None = None
    ) -> tuple[str, list[Any]]:
        """A page of 100 as the listing routes ask for it (one more row: is there a next)."""
        since = now - hours * 3_600_000 if hours is not None else None
        return await capture(
            store.list_sessions,
            user_id=user,
            contact_id=contact_id,
            min_activity_ms=since,
            status=None,
            now_ms=now,
            after=after,
            limit=101,
        )

    out["recent: list_sessions"] = await listing(None, 24)
    sql, args = out["recent: list_sessions"]
    ids = [r["id"] for r in await conn.fetch(sql, *args)][:100]
    out["recent: messages_for_sessions"] = await capture(
        store.messages_for_sessions, user, ids, 100
    )
    # The paging scenario's 100th page: the keyset must start the index read at the cursor.
    deep = await conn.fetchrow(
        "SELECT activity_ms, id FROM sessions WHERE user_id = $1"
        " ORDER BY activity_ms DESC, id OFFSET 9899 LIMIT 1",
        user,
    )
    if deep is not None:
        out["paging: list_sessions, page 100"] = await listing(
            None, 876_000, after=(deep["activity_ms"], deep["id"])
        )
    out["contact: get_contact"] = await capture(
        contacts_store.get_contact, user, tenant["heavy_contact_id"]
    )
    out["contact: list_sessions"] = await listing(tenant["heavy_contact_id"], None)
    return out


async def db_floor(
    dsn: str,
    statements: dict[str, tuple[str, list[Any]]],
    *,
    duration: float,
    concurrency: int,
    names: list[str],
    custom_plans: bool = False,
) -> dict[str, Any]:
    """Run ``names`` back to back (one 'request') on ``concurrency`` connections; p50/p99.

    As the service runs them: prepared statements (asyncpg's statement cache, as under
    SQLAlchemy), so PostgreSQL may switch to a generic plan from the sixth execution on.
    ``custom_plans`` sets ``plan_cache_mode = force_custom_plan``: a plan for the values.
    """
    settings = {"plan_cache_mode": "force_custom_plan"} if custom_plans else {}
    pool = await asyncpg.create_pool(
        dsn, min_size=concurrency, max_size=concurrency, server_settings=settings
    )
    times: list[float] = []
    stop = time.monotonic() + duration

    async def loop() -> None:
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                t = time.perf_counter()
                for name in names:
                    sql, args = statements[name]
                    await conn.fetch(sql, *args)
                times.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await pool.close()
    return {
        "statements": names,
        "connections": concurrency,
        "requests": len(times),
        "rps": round(len(times) / elapsed, 1),
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
    }


async def explain_all(dsn: str, statements: dict[str, tuple[str, list[Any]]]) -> dict[str, str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each statement (after one warm-up execution)."""
    conn = await asyncpg.connect(dsn)
    out = {}
    try:
        for name, (sql, args) in statements.items():
            await conn.fetch(sql, *args)
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            out[name] = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    return out


def _literal(value: Any) -> str:
    """A SQL literal for EXECUTE (ints, strings, lists of strings)."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "'{" + ",".join(value) + "}'"
    return "'" + str(value).replace("'", "''") + "'"


async def explain_generic(dsn: str, statements: dict[str, tuple[str, list[Any]]]) -> dict[str, str]:
    """The plan a prepared statement settles on: ``EXPLAIN (ANALYZE, BUFFERS) EXECUTE`` after
    six executions (PostgreSQL may then switch to a generic plan, as it does for the
    service's statements, which SQLAlchemy's asyncpg dialect prepares)."""
    conn = await asyncpg.connect(dsn)
    out = {}
    try:
        for name, (sql, args) in statements.items():
            values = ", ".join(_literal(a) for a in args)
            await conn.execute(f"PREPARE bench_stmt AS {sql}")
            try:
                for _ in range(6):
                    await conn.execute(f"EXECUTE bench_stmt({values})")
                rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_stmt({values})")
                out[name] = "\n".join(r[0] for r in rows)
            finally:
                await conn.execute("DEALLOCATE bench_stmt")
    finally:
        await conn.close()
    return out


async def run_transactions(
    pool: asyncpg.Pool,
    one: Callable[[asyncpg.Connection], Awaitable[None]],
    *,
    duration: float,
    concurrency: int,
    size: int,
    label: str,
) -> dict[str, Any]:
    """Run ``one`` (a transaction of ``size`` messages) back to back on ``concurrency``
    connections for ``duration`` seconds; an ingest floor's figures (then closes the pool)."""
    times: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def loop() -> None:
        nonlocal errors
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    await one(conn)
                except asyncpg.PostgresError as exc:
                    errors += 1
                    if errors == 1:
                        log(f"{label} error: {exc!r}")
                    continue
                times.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await pool.close()
    out: dict[str, Any] = {"connections": concurrency}
    if size == 1:
        out["messages"] = len(times)
    else:
        out |= {"batches": len(times), "batch_size": size}
    return out | {
        "msg_per_s": round(len(times) * size / elapsed, 1),
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "errors": errors,
    }


async def ingest_batch_floor(
    dsn: str,
    tenant: dict[str, Any],
    *,
    duration: float,
    concurrency: int,
    run_id: str,
    size: int = 1000,
) -> dict[str, Any]:
    """A batch of ``size`` messages per transaction, set-based (what a batch could cost):
    lock every contact of the batch (one statement), read the timeout, look up the
    externalIds (one), each contact's latest session (one, LATERAL), place the messages in
    memory with the session rule, then insert/update sessions and insert messages with
    pipelined ``executemany``. Messages are stamped now, as in the batch scenario, so a
    later session never exists and the latest one is the only neighbour."""
    from chatsessions.ids import new_id
    from chatsessions.sessions import rule
    from chatsessions.sessions.rule import PlacementKind, SessionSpan, TimeoutHistory

    user = tenant["ingest_user_id"]
    contacts = tenant["ingest_contact_ids"]
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    rng = random.Random(run_id)
    counter = 0

    async def one(conn: asyncpg.Connection) -> None:
        nonlocal counter
        now = int(time.time() * 1000)
        items = []
        for _ in range(size):
            counter += 1
            items.append(
                (
                    rng.choice(contacts),
                    now - rng.randint(0, 59_999),
                    rng.random() < 0.5,
                    f"floorb-{run_id}-{counter}",
                )
            )
        wanted = sorted({it[0] for it in items})
        async with conn.transaction():
            await conn.fetch(
                "SELECT id FROM contacts WHERE user_id = $1 AND id = ANY($2::varchar[]) "
                "ORDER BY id FOR UPDATE",
                user,
                wanted,
            )
            changes = await conn.fetch(
                "SELECT effective_from_ms, timeout_ms FROM timeout_changes WHERE user_id = $1", user
            )
            history = TimeoutHistory(tuple((r[0], r[1]) for r in changes))
            await conn.fetch(
                "SELECT external_id, id, session_id FROM messages WHERE user_id = $1 "
                "AND external_id = ANY($2::varchar[])",
                user,
                [it[3] for it in items],
            )
            latest = await conn.fetch(
                "SELECT s.id, s.contact_id, s.start_ms, s.last_ms, s.closed_at_ms, s.message_count, "
                "s.inbound_count, s.outbound_count FROM unnest($2::varchar[]) AS c(id) CROSS JOIN "
                "LATERAL (SELECT * FROM sessions WHERE user_id = $1 AND contact_id = c.id "
                "ORDER BY start_ms DESC LIMIT 1) s",
                user,
                wanted,
            )
            current = {r["contact_id"]: dict(r) for r in latest}
            new_sessions: dict[str, dict[str, Any]] = {}
            messages = []
            for contact, ts, inbound, ext in sorted(items, key=lambda it: it[1]):
                cur = current.get(contact)
                span = (
                    SessionSpan(cur["id"], cur["start_ms"], cur["last_ms"], cur["closed_at_ms"])
                    if cur
                    else None
                )
                if rule.place_message(ts, span, None, history).kind is PlacementKind.JOIN:
                    assert cur is not None
                    cur["last_ms"] = max(cur["last_ms"], ts)
                    cur["message_count"] += 1
                    cur["inbound_count"] += inbound
                    cur["outbound_count"] += not inbound
                    cur["dirty"] = True
                else:
                    cur = {
                        "id": new_id(),
                        "contact_id": contact,
                        "start_ms": ts,
                        "last_ms": ts,
                        "closed_at_ms": None,
                        "message_count": 1,
                        "inbound_count": int(inbound),
                        "outbound_count": int(not inbound),
                    }
                    current[contact] = new_sessions[cur["id"]] = cur
                messages.append(
                    (
                        user,
                        new_id(),
                        contact,
                        cur["id"],
                        "inbound" if inbound else "outbound",
                        "user" if inbound else "assistant",
                        "floor batch message",
                        ts,
                        ext,
                        now,
                    )
                )
            await conn.executemany(
                "INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, expires_ms, "
                "closed_at_ms, activity_ms, message_count, inbound_count, outbound_count, "
                "created_at_ms, updated_at_ms) VALUES ($1,$2,$3,$4,$5,$6,NULL,$5,$7,$8,$9,$10,$10)",
                [
                    (
                        user,
                        x["id"],
                        x["contact_id"],
                        x["start_ms"],
                        x["last_ms"],
                        history.expires(x["last_ms"]),
                        x["message_count"],
                        x["inbound_count"],
                        x["outbound_count"],
                        now,
                    )
                    for x in new_sessions.values()
                ],
            )
            await conn.executemany(
                "UPDATE sessions SET last_ms=$3, expires_ms=$4, activity_ms=$3, message_count=$5, "
                "inbound_count=$6, outbound_count=$7, updated_at_ms=$8 WHERE user_id=$1 AND id=$2",
                [
                    (
                        user,
                        x["id"],
                        x["last_ms"],
                        history.expires(x["last_ms"]),
                        x["message_count"],
                        x["inbound_count"],
                        x["outbound_count"],
                        now,
                    )
                    for x in current.values()
                    if x.get("dirty") and x["id"] not in new_sessions
                ],
            )
            await conn.executemany(
                "INSERT INTO messages (user_id, id, contact_id, session_id, direction, role, type, "
                "content, media_url, ts_ms, external_id, created_at_ms) "
                "VALUES ($1,$2,$3,$4,$5,$6,'text',$7,NULL,$8,$9,$10)",
                messages,
            )

    return await run_transactions(
        pool, one, duration=duration, concurrency=concurrency, size=size, label="batch floor"
    )


async def ingest_floor(
    dsn: str, tenant: dict[str, Any], *, duration: float, concurrency: int, run_id: str
) -> dict[str, Any]:
    """One message per transaction, written directly in the service's transaction shape:
    lock the contact row, read the timeout, select the neighbouring sessions, insert or
    update the session (the rule decides), insert the message."""
    from chatsessions.ids import new_id
    from chatsessions.sessions import rule
    from chatsessions.sessions.rule import PlacementKind, SessionSpan, TimeoutHistory

    user = tenant["ingest_user_id"]
    contacts = tenant["ingest_contact_ids"]
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    cols = (
        "id, contact_id, start_ms, last_ms, expires_ms, closed_at_ms, activity_ms, "
        "message_count, inbound_count, outbound_count"
    )
    counter = 0
    rng = random.Random(run_id)

    async def one(conn: asyncpg.Connection) -> None:
        nonlocal counter
        counter += 1
        n = counter
        contact = rng.choice(contacts)
        ts = int(time.time() * 1000) - rng.randint(0, 999)
        inbound = rng.random() < 0.5
        async with conn.transaction():
            await conn.fetch(
                "SELECT id FROM contacts WHERE user_id = $1 AND id IN ($2) ORDER BY id FOR UPDATE",
                user,
                contact,
            )
            changes = await conn.fetch(
                "SELECT effective_from_ms, timeout_ms FROM timeout_changes WHERE user_id = $1", user
            )
            history = TimeoutHistory(tuple((r[0], r[1]) for r in changes))
            before = await conn.fetchrow(
                f"SELECT {cols} FROM sessions WHERE user_id = $1 AND contact_id = $2 AND start_ms <= $3 "
                "ORDER BY start_ms DESC LIMIT 1",
                user,
                contact,
                ts,
            )
            after = await conn.fetchrow(
                f"SELECT {cols} FROM sessions WHERE user_id = $1 AND contact_id = $2 AND start_ms > $3 "
                "ORDER BY start_ms ASC LIMIT 1",
                user,
                contact,
                ts,
            )

            def span(r: Any) -> SessionSpan | None:
                return (
                    SessionSpan(r["id"], r["start_ms"], r["last_ms"], r["closed_at_ms"])
                    if r
                    else None
                )

            placement = rule.place_message(ts, span(before), span(after), history)
            now = int(time.time() * 1000)
            if (
                placement.kind is PlacementKind.JOIN
                and before is not None
                and placement.target == before["id"]
            ):
                sid = before["id"]
                last = max(before["last_ms"], ts)
                closed = before["closed_at_ms"]
                await conn.execute(
                    "UPDATE sessions SET start_ms=$3, last_ms=$4, expires_ms=$5, closed_at_ms=$6, "
                    "activity_ms=$7, message_count=$8, inbound_count=$9, outbound_count=$10, "
                    "updated_at_ms=$11 WHERE user_id=$1 AND id=$2",
                    user,
                    sid,
                    min(before["start_ms"], ts),
                    last,
                    history.expires(last),
                    closed,
                    max(last, closed or last),
                    before["message_count"] + 1,
                    before["inbound_count"] + inbound,
                    before["outbound_count"] + (not inbound),
                    now,
                )
            else:  # NEW (a message stamped now has no later session to join or merge)
                sid = new_id()
                await conn.execute(
                    "INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, expires_ms, "
                    "closed_at_ms, activity_ms, message_count, inbound_count, outbound_count, "
                    "created_at_ms, updated_at_ms) VALUES ($1,$2,$3,$4,$4,$5,NULL,$4,1,$6,$7,$8,$8)",
                    user,
                    sid,
                    contact,
                    ts,
                    history.expires(ts),
                    int(inbound),
                    int(not inbound),
                    now,
                )
            await conn.execute(
                "INSERT INTO messages (user_id, id, contact_id, session_id, direction, role, type, "
                "content, media_url, ts_ms, external_id, created_at_ms) "
                "VALUES ($1,$2,$3,$4,$5,$6,'text',$7,NULL,$8,$9,$10)",
                user,
                new_id(),
                contact,
                sid,
                "inbound" if inbound else "outbound",
                "user" if inbound else "assistant",
                f"floor message {n}",
                ts,
                f"floor-{run_id}-{n}",
                now,
            )

    return await run_transactions(
        pool, one, duration=duration, concurrency=concurrency, size=1, label="ingest floor"
    )


async def ingest_service_floor(
    dsn: str,
    tenant: dict[str, Any],
    *,
    duration: float,
    concurrency: int,
    run_id: str,
    size: int = 1,
) -> dict[str, Any]:
    """(c″) The service's own write path without HTTP: per request of ``size`` messages,
    ``messages.service.store_messages`` (as the routes store messages), on
    ``concurrency`` connections of the service's own pool. What is left out: HTTP, JSON, auth (the ingest tenant has no endpoints)."""
    from chatsessions.config import Settings
    from chatsessions.db import Database
    from chatsessions.messages import service as messages_service
    from chatsessions.messages.schemas import MessageIn

    user = tenant["ingest_user_id"]
    contacts = tenant["ingest_contact_ids"]
    spread = 999 if size == 1 else 59_999
    db = Database(Settings(database_url=dsn, database_pool_size=concurrency))
    rng = random.Random(run_id)
    counter = 0
    times: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def one() -> None:
        nonlocal counter
        now = int(time.time() * 1000)
        items = []
        for _ in range(size):
            counter += 1
            body = MessageIn(
                contactId=rng.choice(contacts),
                direction="inbound" if rng.random() < 0.5 else "outbound",
                timestamp=now - rng.randint(0, spread),
                content="floor service message",
                externalId=f"floorc2-{run_id}-{counter}",
            )
            items.append(messages_service.prepare_message(body, now_ms=now))

        await messages_service.store_messages(db, user_id=user, items=items, now_ms=now)

    async def loop() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                await one()
            except Exception as exc:
                errors += 1
                if errors == 1:
                    log(f"service ingest floor error: {exc!r}")
                continue
            times.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await db.dispose()
    out: dict[str, Any] = {"connections": concurrency}
    if size == 1:
        out["messages"] = len(times)
    else:
        out |= {"batches": len(times), "batch_size": size}
    return out | {
        "msg_per_s": round(len(times) * size / elapsed, 1),
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "errors": errors,
    }


# -- the run --------------------------------------------------------------------------------


def response_size(path: str, api_key: str) -> int:
    """Bytes of one response body."""
    r = httpx.get(BASE + path, headers={"X-API-Key": api_key}, timeout=30)
    r.raise_for_status()
    return len(r.content)


def warm(path: str, api_key: str, n: int = 20) -> None:
    """A few requests so that every worker has its pool and statement cache warm."""
    with httpx.Client(headers={"X-API-Key": api_key}, timeout=30) as c:
        for _ in range(n):
            c.get(BASE + path)


async def vacuum_analyze(dsn: str) -> float:
    """``VACUUM (ANALYZE)`` the whole bench database; returns the seconds it took.

    Every run writes to the ingest tenant (updated sessions leave dead rows), and this
    machine's PostgreSQL runs with ``autovacuum = off`` (its CI configuration): without
    this, each run would measure a more bloated database than the last, where in
    production autovacuum would have cleaned up. Seconds when nothing is to be done.
    A CHECKPOINT then writes out what the vacuum dirtied, so that the checkpoint it
    would trigger later does not compete with the scenarios' commits for the disk.
    """
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario and floor of one scale; returns the results document."""
    tenant = json.loads(tenant_file(args.scale).read_text())
    url = args.database_url or tenant["database_url"]
    dsn = pg_dsn(url)
    log(f"VACUUM (ANALYZE): {asyncio.run(vacuum_analyze(dsn)):.1f} s")
    env = server_env(url)
    key = tenant["api_key"]
    run_id = f"{int(time.time())}"
    contacts_file = RESULTS / f"{args.scale}-contacts.txt.tmp"
    # Writes go to the ingest tenant, so that the read scenarios of the next run see the
    # data as loaded.
    contacts_file.write_text("\n".join(tenant["ingest_contact_ids"]) + "\n")
    lua_env = {"BENCH_API_KEY": key, "BENCH_RUN_ID": run_id}
    write_env = {
        "BENCH_API_KEY": tenant["ingest_api_key"],
        "BENCH_CONTACTS_FILE": str(contacts_file),
        "BENCH_RUN_ID": run_id,
    }
    d = args.duration
    started = datetime.now(UTC)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    res: dict[str, Any] = {
        "service_commit": commit + (" + uncommitted changes in src/" if dirty else ""),
        "scale": args.scale,
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "dataset": tenant["loaded"],
        "data_now_ms": tenant["now_ms"],
        "server": {
            "kind": "uvicorn",
            "workers": args.workers,
            "command": " ".join(server_command("uvicorn", args.workers)),
        },
        "duration_s": d,
        "scenarios": {},
        "floors": {},
        "rss": [],
    }
    sc = res["scenarios"]
    heavy = f"/v1/chat-sessions/{tenant['heavy_contact_id']}"
    reads = {"recent": RECENT, "recent_messages": RECENT_MSGS, "contact": heavy}
    with server("uvicorn", args.workers, env, "service (all scenarios)") as rss:
        for path in reads.values():
            warm(path, key)
        res["response_bytes"] = {name: response_size(path, key) for name, path in reads.items()}
        for name, path in reads.items():
            for c in (1, 32):
                log(f"{name} c={c}")
                sc[f"{name}@c{c}"] = wrk(path, "get.lua", connections=c, duration=d, env=lua_env)
        log("paging")
        sc["paging"] = paging(key)
        if not args.skip_writes:
            # Warm-up, not measured: the write path's index pages (this VM's kernel pages
            # out memory untouched for seconds, so a first run reads them from disk).
            log("writes: warm-up")
            wrk("/v1/messages", "post_message.lua", connections=8, duration=5, env=write_env)
            wrk("/v1/messages/batch", "post_batch.lua", connections=2, duration=5, env=write_env)
            for c in (1, 32):
                log(f"post message c={c}")
                r = wrk(
                    "/v1/messages", "post_message.lua", connections=c, duration=d, env=write_env
                )
                r["msg_per_s"] = r["rps"]
                sc[f"post_message@c{c}"] = r
            for c in (1, 32):
                log(f"post batch c={c}")
                r = wrk(
                    "/v1/messages/batch", "post_batch.lua", connections=c, duration=d, env=write_env
                )
                r["msg_per_s"] = round(r["rps"] * 1000, 1)
                sc[f"post_batch@c{c}"] = r
        res["rss"].append(rss.summary())

    log("floors: database")
    fl = res["floors"]

    async def db_part() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            stmts = await service_statements(conn, tenant)
        finally:
            await conn.close()
        res["statements"] = {name: sql for name, (sql, _) in stmts.items()}
        groups = {
            "recent": ["recent: list_sessions"],
            "recent_messages": ["recent: list_sessions", "recent: messages_for_sessions"],
            "contact": ["contact: get_contact", "contact: list_sessions"],
            "auth": ["auth: key by hash"],
        }
        for name, names in groups.items():
            for c in (1, 32):
                fl[f"db:{name}@c{c}"] = await db_floor(
                    dsn, stmts, duration=min(d, 5), concurrency=c, names=names
                )
                fl[f"dbcustom:{name}@c{c}"] = await db_floor(
                    dsn, stmts, duration=min(d, 5), concurrency=c, names=names, custom_plans=True
                )
        res["explain"] = await explain_all(dsn, stmts)
        res["explain_generic"] = await explain_generic(dsn, stmts)
        if not args.skip_writes:
            log("floors: ingest (after a warm-up, not measured)")
            await ingest_service_floor(
                dsn, tenant, duration=5, concurrency=2, run_id=f"{run_id}w", size=1000
            )
            for c in (1, 32):
                fl[f"ingest@c{c}"] = await ingest_floor(
                    dsn, tenant, duration=d, concurrency=c, run_id=f"{run_id}{c}"
                )
            for c in (1, 32):
                fl[f"ingest_batch@c{c}"] = await ingest_batch_floor(
                    dsn, tenant, duration=d, concurrency=c, run_id=f"{run_id}b{c}"
                )
            log("floors: ingest, the service's statements")
            for c in (1, 32):
                fl[f"ingest_service@c{c}"] = await ingest_service_floor(
                    dsn, tenant, duration=d, concurrency=c, run_id=f"{run_id}s{c}", size=1
                )
            for c in (1, 32):
                fl[f"ingest_service_batch@c{c}"] = await ingest_service_floor(
                    dsn, tenant, duration=d, concurrency=c, run_id=f"{run_id}sb{c}", size=1000
                )

    asyncio.run(db_part())

    log("floors: http")
    for name in ("recent", "recent_messages"):
        floor_env = {**os.environ, "FLOOR_BODY_BYTES": str(res["response_bytes"][name])}
        with server("floor", args.workers, floor_env, f"http floor ({name})") as rss:
            warm("/", key)
            for c in (1, 32):
                fl[f"http:{name}@c{c}"] = wrk(
                    RECENT, "get.lua", connections=c, duration=d, env=lua_env
                )
            res["rss"].append(rss.summary())

    base = args.baseline
    if base and base != args.scale and tenant_file(base).exists():
        # The recent scenario on the baseline dataset, in this run (the ratio target).
        other = json.loads(tenant_file(base).read_text())
        asyncio.run(vacuum_analyze(pg_dsn(other["database_url"])))
        base_env = {**lua_env, "BENCH_API_KEY": other["api_key"]}
        res["baseline"] = {base: {"dataset": other["loaded"]}}
        with server(
            "uvicorn", args.workers, server_env(other["database_url"]), f"service ({base})"
        ) as rss:
            warm(RECENT, other["api_key"])
            for c in (1, 32):
                log(f"baseline {base}: recent c={c}")
                res["baseline"][base][f"recent@c{c}"] = wrk(
                    RECENT, "get.lua", connections=c, duration=d, env=base_env
                )
            res["rss"].append(rss.summary())

    if args.servers:
        # Keep what is measured so far, should the comparison fail.
        results_path(args.scale).write_text(json.dumps(res, indent=1) + "\n")
        res["servers"] = compare_servers(env, lua_env, d, key)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    contacts_file.unlink(missing_ok=True)
    return res


def results_path(scale: str) -> Path:
    """Where a run's results go: ``results/<scale>-<UTC date>.json``."""
    return RESULTS / f"{scale}-{datetime.now(UTC):%Y-%m-%d}.json"


def compare_servers(
    env: dict[str, str], lua_env: dict[str, str], d: int, key: str
) -> list[dict[str, Any]]:
    """The recent scenario (c=1 and c=32) under uvicorn and granian with 1–4 workers."""
    out = []
    for workers in (1, 2, 3, 4):
        for kind in ("uvicorn", "granian"):
            log(f"servers: {kind} x{workers}")
            # The pools stay within max_connections (100): 20 per worker up to 3 workers
            # (the default, no overflow), 16 with 4.
            srv_env = {**env, "CHATSESSIONS_DATABASE_POOL_SIZE": "20" if workers <= 3 else "16"}
            row: dict[str, Any] = {"server": kind, "workers": workers}
            try:
                with server(kind, workers, srv_env, f"{kind} x{workers}") as rss:
                    warm(RECENT, key, 10 * workers)
                    for c in (1, 32):
                        r = wrk(RECENT, "get.lua", connections=c, duration=d, env=lua_env)
                        row[f"c{c}"] = {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
                    row["worker_peak_mb"] = rss.summary()["worker_peak_mb"]
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                log(f"servers: {kind} x{workers} failed: {exc}")
                row["error"] = str(exc)[:300]
                continue
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="small")
    p.add_argument("--database-url", default=None, help="default: the one the tenant file names")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--workers", type=int, default=2, help="server workers for the scenarios")
    p.add_argument("--servers", action="store_true", help="add the uvicorn/granian comparison")
    p.add_argument(
        "--baseline",
        default="small",
        help="also measure the recent scenario on this scale's dataset in the same run",
    )
    p.add_argument("--skip-writes", action="store_true", help="read scenarios only")
    p.add_argument("--no-report", action="store_true", help="do not regenerate docs/performance.md")
    p.add_argument(
        "--ingest-shapes",
        default="all",
        help="bench/ingest_shapes.py cases: all, none, or a comma list of shapes",
    )
    p.add_argument(
        "--ingest-growth",
        type=int,
        default=None,
        help="messages stored by the growth shapes (default: 100,000 small, 1,000,000 else)",
    )
    a = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    res = run(a)
    path = results_path(a.scale)
    if path.exists() and not a.servers:
        # Keep a server comparison measured earlier today (it is labelled with its commit).
        earlier = json.loads(path.read_text())
        for key in ("servers", "servers_custom_plans"):
            if key in earlier:
                res[key] = earlier[key]
                # Where the comparison was measured: kept across any number of re-runs.
                res.setdefault(
                    "servers_from",
                    earlier.get("servers_from")
                    or {
                        "started": earlier.get("started"),
                        "service_commit": earlier.get("service_commit"),
                    },
                )
    path.write_text(json.dumps(res, indent=1) + "\n")
    log(f"wrote {path}")
    if a.ingest_shapes != "none":
        import ingest_shapes

        growth = a.ingest_growth
        if growth is None:
            growth = 100_000 if a.scale == "small" else 1_000_000
        shape_args = ["--growth", str(growth)]
        if a.ingest_shapes != "all":
            shape_args += ["--shapes", a.ingest_shapes]
        ingest_shapes.run(shape_args)
    if not a.no_report:
        import report

        report.main([])


if __name__ == "__main__":
    main()
