"""Waiting in tests: poll a condition until it holds or a deadline passes.

Tests never sleep for a fixed time and hope: they wait for the progress they need. The
deadline only bounds a failure; it is generous, so that a slow or busy machine passes
where a quick one does, and a quick machine never waits longer than the condition takes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# Failure bound of a wait when the test names none: far above anything a working system
# needs on a slow, loaded machine.
DEFAULT_DEADLINE_S = 60.0


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    within_s: float = DEFAULT_DEADLINE_S,
    interval_s: float = 0.02,
) -> None:
    """Poll ``condition`` (sync or async) until it is true; fail naming ``what`` if it is
    still false after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)
