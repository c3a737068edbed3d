"""Property test: PostgreSQL's in-database summary and per-bucket medians
(``percentile_disc``) give exactly the numbers of the arithmetic on the sessions' figures
read back (nearest rank, sums), for random sessions, ranges and channels. On SQLite both
sides are the same arithmetic; the test still checks the store's two entry points agree."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsessions.analytics import service, store
from chatsessions.analytics.stats import distribution_of
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from tests.conftest import T0, create_tenant

MIN = 60_000
DAY = 1440 * MIN
BASE = T0 - 12 * DAY

session = st.tuples(
    st.integers(0, 4),  # contact
    st.integers(0, 10 * 24 * 60),  # start, minutes after BASE
    st.lists(st.tuples(st.integers(0, 900), st.booleans()), min_size=1, max_size=5),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sessions=st.lists(session, min_size=10, max_size=40),
    lo=st.integers(0, 48),
    hours=st.sampled_from([1, 30, 11 * 24]),
    channel=st.sampled_from([None, None, "whatsapp", "sms", "telegram"]),
)
async def test_database_aggregates_equal_the_arithmetic(
    database: Database,
    sessions: list[tuple[int, int, list[tuple[int, bool]]]],
    lo: int,
    hours: int,
    channel: str | None,
) -> None:
    tenant = await create_tenant(database, now_ms=BASE - MIN)

    async def setup(conn: Any) -> list[str]:
        out = []
        for n in range(5):
            contact = await contacts_service.create_contact(
                conn,
                user_id=tenant.user_id,
                fields=ContactIn(
                    email=f"a{n}@x.example", channel=["WhatsApp", "sms", "whatsapp"][n % 3]
                ),
                now_ms=BASE,
            )
            out.append(contact.id)
        return out

    contacts = await database.run_write(setup)
    items = []
    for who, start, talk in sessions:
        ts = BASE + start * MIN
        for gap_s, inbound in talk:
            ts += gap_s * 1000
            items.append(
                messages_service.prepare_message(
                    MessageIn(
                        contactId=contacts[who],
                        direction="inbound" if inbound else "outbound",
                        timestamp=ts,
                    ),
                    now_ms=T0,
                )
            )
    if items:

        async def work(conn: Any) -> Any:
            return await messages_service.ingest(
                conn, user_id=tenant.user_id, items=items, now_ms=T0
            )

        await database.run_write(work)

    from_ms = BASE + lo * 3_600_000
    to_ms = from_ms + hours * 3_600_000
    args: dict[str, Any] = {
        "user_id": tenant.user_id,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "channel": channel,
    }
    async with database.read() as conn:
        figures = await store.session_figures(conn, **args)
        aggregated = await store.summarise_range(conn, **args)
        starts = [from_ms + k * DAY for k in range(0, hours // 24 + 1)]
        medians = await store.first_response_medians(conn, **args, starts=starts)
    computed = store.summary_of(figures)
    # Means may differ in the last bit (the database sums in its own order): compare what
    # the API shows (milliseconds), everything else exactly.
    for name in ("first_response", "reply_time", "duration"):
        a, b = getattr(aggregated, name), getattr(computed, name)
        assert (a.n, a.median_ms, a.p90_ms) == (b.n, b.median_ms, b.p90_ms), name
        assert service.Stats.of(a).as_json() == service.Stats.of(b).as_json(), name
    assert (aggregated.sessions, aggregated.contacts, aggregated.unanswered) == (
        computed.sessions,
        computed.contacts,
        computed.unanswered,
    )
    assert (aggregated.inbound, aggregated.outbound) == (computed.inbound, computed.outbound)
    expected = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else to_ms
        values = [
            f.first_response_ms
            for f in figures
            if f.first_response_ms is not None and start <= f.start_ms < end
        ]
        expected.append((len(values), distribution_of(values).median_ms))
    assert medians == expected
