"""The analytics figures of one session, kept on its row and maintained by the write path.

Pure: no I/O. Definitions (docs/analytics.md), over the session's messages in order
(time, then message id):

- *first inbound*: the time of its first inbound message;
- *reply*: each outbound message that follows one or more inbound messages since the
  previous outbound one answers them; its reply time is its time − the first of them;
- *first response*: the session's first reply time (the turn that holds its first inbound
  message is the first one that can be answered);
- *unanswered since*: the first inbound message after the last outbound one, if any: the
  turn still waiting, which the next outbound message will answer.

The write path extends the figures message by message while messages arrive after every
message of the session (:func:`extend_figures`); any other change (a message before or
tied with the last one, a merge, a re-cut) makes them stale, and the placement recomputes
them from the session's messages (the stored ones read first; :func:`figures_of_keys`,
the same as :func:`figures_of`) before the row is written
(``messages.placement.ContactPlacement.settle_figures``). When the only change is messages
inserted among the stored ones, the stored figures and the stored messages around the
inserted ones are enough (:func:`figures_after_inserts`): a late message in a session of
100,000 reads a few of them, not all.

>>> f = figures_of([(1_000, True), (2_000, True), (5_000, False), (9_000, True)])
>>> f.first_inbound_ms, f.first_response_ms, f.reply_sum_ms, f.reply_count
(1000, 4000, 4000, 1)
>>> f.unanswered_since_ms
9000
>>> extend_figures(f, 10_000, inbound=False).reply_sum_ms
5000
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "EMPTY",
    "Figures",
    "extend_figures",
    "figures_after_inserts",
    "figures_of",
    "figures_of_keys",
]


class Figures(NamedTuple):
    """A session's figures (times in epoch ms, durations in ms)."""

    first_inbound_ms: int | None
    first_response_ms: int | None
    reply_sum_ms: int
    reply_count: int
    unanswered_since_ms: int | None


EMPTY = Figures(None, None, 0, 0, None)


def extend_figures(figures: Figures, ts_ms: int, *, inbound: bool) -> Figures:
    """The figures after one more message that comes after every message counted so far."""
    first_inbound, first_response, reply_sum, reply_count, waiting = figures
    if inbound:
        if waiting is not None and first_inbound is not None:
            return figures
        return Figures(
            ts_ms if first_inbound is None else first_inbound,
            first_response,
            reply_sum,
            reply_count,
            ts_ms if waiting is None else waiting,
        )
    if waiting is None:
        return figures
    reply = ts_ms - waiting
    return Figures(
        first_inbound,
        reply if first_response is None else first_response,
        reply_sum + reply,
        reply_count + 1,
        None,
    )


def figures_of(messages: Iterable[tuple[int, bool]]) -> Figures:
    """The figures of messages ``(ts_ms, inbound)`` given in the session's order:
    :func:`extend_figures` applied message by message (tests/sessions/test_figures.py
    checks the two agree). The write path uses :func:`figures_of_keys`."""
    return figures_of_keys(
        (ts_ms, "", "inbound" if inbound else "outbound") for ts_ms, inbound in messages
    )


def figures_of_keys(keys: Iterable[tuple[int, str, str]]) -> Figures:
    """The figures of messages ``(ts_ms, id, direction)`` given in the session's order, as
    ``sessions.store.message_keys`` reads them.

    :func:`extend_figures` applied message by message, with the figures in local
    variables and the keys read as they are: the placement recomputes hundreds of
    sessions' figures a batch, and a tuple made per message more than doubled the cost
    (2.1 vs 1.0 us for 20 messages)."""
    first_inbound: int | None = None
    first_response: int | None = None
    reply_sum = reply_count = 0
    waiting: int | None = None
    for ts_ms, _id, direction in keys:
        if direction == "inbound":
            if waiting is None:
                waiting = ts_ms
                if first_inbound is None:
                    first_inbound = ts_ms
        elif waiting is not None:
            reply = ts_ms - waiting
            if first_response is None:
                first_response = reply
            reply_sum += reply
            reply_count += 1
            waiting = None
    return Figures(first_inbound, first_response, reply_sum, reply_count, waiting)


def figures_after_inserts(
    stored: Figures,
    around: list[tuple[int, str, str]],
    inserted: list[tuple[int, str, str]],
) -> Figures:
    """The figures of a session once ``inserted`` messages join its stored ones, from the
    stored figures and only the stored messages ``around`` the inserted ones.

    ``around``: every stored message ``(ts_ms, id, direction)`` with a time from the
    last outbound one before the earliest inserted (the session's start if none) to the
    first outbound one after the latest inserted (its end if none), both included, in
    order (what ``sessions.store.message_keys_around`` reads); ``inserted``: in order,
    not empty. A wider ``around`` gives the same figures.

    Why it holds: an outbound message answers whatever waits before it, so nothing
    before the first bounding outbound message (X) and nothing after the second (Z)
    changes its replies; only the window between (W) does. So the reply-time sum and
    count change by W's, recounted with and without the inserted messages. The first
    inbound is the earliest inbound time. The first response is X's first reply when X
    holds an inbound (an outbound, its bound, follows it), else W's (with the inserted
    messages) when W has one, else what it was (Z's, or none). The unanswered turn is
    Z's, unchanged, unless W runs to the session's end.
    """
    lo, hi = inserted[0][0], inserted[-1][0]
    start = -1  # index in ``around`` of X's last message (its bounding outbound)
    end: int | None = None  # index of the bounding outbound after W
    for i, (ts_ms, _id, direction) in enumerate(around):
        if direction != "inbound":
            if ts_ms < lo:
                start = i
            elif ts_ms > hi:
                end = i
                break
    before = around[: start + 1]
    window = around[start + 1 : None if end is None else end + 1]
    first_inbound = stored.first_inbound_ms
    for ts_ms, _id, direction in inserted:
        if direction == "inbound" and (first_inbound is None or ts_ms < first_inbound):
            first_inbound = ts_ms
    # X holds an inbound message: one before the messages read, or one read before its
    # bounding outbound message.
    x_inbound = start >= 0 and (
        (stored.first_inbound_ms is not None and stored.first_inbound_ms < around[0][0])
        or any(direction == "inbound" for _ts, _id, direction in before)
    )
    # The window's figures counted from nothing waiting (X ends with an outbound message).
    old = figures_of_keys(window)
    new = figures_of_keys(sorted(window + inserted))
    first_response = new.first_response_ms
    if x_inbound or first_response is None:
        first_response = stored.first_response_ms
    return Figures(
        first_inbound,
        first_response,
        stored.reply_sum_ms - old.reply_sum_ms + new.reply_sum_ms,
        stored.reply_count - old.reply_count + new.reply_count,
        stored.unanswered_since_ms if end is not None else new.unanswered_since_ms,
    )
