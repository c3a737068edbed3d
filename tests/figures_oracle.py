"""A session's analytics figures straight from their definitions (docs/analytics.md),
written independently of the code under test, to check what the write path stores."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["figures_by_definition"]


def figures_by_definition(
    ordered: Sequence[tuple[int, str]],
) -> tuple[int | None, int | None, int, int, int | None]:
    """``(first inbound, first response, reply sum, reply count, unanswered since)`` of a
    session's messages ``(ts_ms, direction)`` in the session's order (time, then id)."""
    inbound_at = [n for n, (_ts, d) in enumerate(ordered) if d == "inbound"]
    first_inbound = ordered[inbound_at[0]][0] if inbound_at else None
    first_response = None
    if inbound_at:
        # Its first outbound message after its first inbound message − that inbound's time.
        after = [ts for ts, d in ordered[inbound_at[0] + 1 :] if d == "outbound"]
        if after:
            first_response = after[0] - ordered[inbound_at[0]][0]
    replies: list[int] = []
    since_previous_outbound: list[int] = []
    for ts, direction in ordered:
        if direction == "inbound":
            since_previous_outbound.append(ts)
        else:
            if since_previous_outbound:  # it follows one or more inbound messages
                replies.append(ts - since_previous_outbound[0])
            since_previous_outbound = []
    waiting = since_previous_outbound[0] if since_previous_outbound else None
    return first_inbound, first_response, sum(replies), len(replies), waiting
