"""Circuit breakers with an adaptive latency baseline, one per dependency.

A breaker is *closed* (calls pass), *open* (calls fail at once with BreakerOpenError, for
``reset_timeout_s``), or *half-open* (one probe call passes; its success closes the breaker, its
failure opens it again). ``failure_threshold`` consecutive failures open it (Nygard, "Release
It!", the Circuit Breaker pattern). A call slower than its budget is a failure: the budget is
the configured ceiling, tightened on latency-critical calls to ``srtt + 4 * rttvar`` from an EWMA
of past latencies, the retransmission-timeout estimator of RFC 6298 (alpha 1/8, beta 1/4), but
never below ``min_budget_ms``. A dependency that turns slow therefore trips the breaker early
instead of eating the whole request budget. Each timeout doubles the next budget until a call
succeeds (RFC 6298 section 5.5, "back off the timer"), so a dependency that is only busy (a CPU
model under load, its calls queued) is waited for and its new latency learned, while one that
answers nothing within the ceiling still opens the breaker after ``failure_threshold`` calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from memory.errors import BreakerOpenError

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]

ALPHA = 1 / 8
"""RFC 6298 section 2: gain of the smoothed latency."""
BETA = 1 / 4
"""RFC 6298 section 2: gain of the latency variation."""
K = 4.0
"""RFC 6298 section 2: variation multiplier in the timeout."""


@dataclass
class LatencyBaseline:
    """EWMA of latency and of its deviation, in milliseconds (RFC 6298 section 2).

    >>> b = LatencyBaseline()
    >>> b.observe(100.0); b.budget_ms(10, 1000)
    300.0
    >>> for _ in range(50): b.observe(100.0)
    >>> round(b.budget_ms(10, 1000))
    100
    """

    srtt_ms: float | None = None
    rttvar_ms: float = 0.0
    backoff: float = 1.0
    """Multiplier of the budget: doubled per timeout, reset by the next measured latency."""

    def observe(self, ms: float, size: float = 1.0) -> None:
        """Fold one measured latency of a call of ``size`` units of work in, per unit (and end
        any back-off)."""
        self.backoff = 1.0
        ms /= size
        if self.srtt_ms is None:
            self.srtt_ms, self.rttvar_ms = ms, ms / 2
            return
        self.rttvar_ms = (1 - BETA) * self.rttvar_ms + BETA * abs(self.srtt_ms - ms)
        self.srtt_ms = (1 - ALPHA) * self.srtt_ms + ALPHA * ms

    def budget_ms(self, floor_ms: float, ceiling_ms: float, size: float = 1.0) -> float:
        """``max(floor_ms, (srtt + K * rttvar) * size) * backoff`` for a call of ``size``
        units of work, at most ``ceiling_ms``; the ceiling if unknown."""
        if self.srtt_ms is None:
            return ceiling_ms
        expected = (self.srtt_ms + K * self.rttvar_ms) * size
        return min(ceiling_ms, max(floor_ms, expected) * self.backoff)

    def timed_out(self) -> None:
        """A call ran out of its budget: double the next one (RFC 6298 section 5.5)."""
        self.backoff = min(self.backoff * 2, 1024.0)


class CircuitBreaker:
    """One dependency's breaker; see the module docstring. Not thread-safe (one event loop)."""

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        reset_timeout_s: float,
        min_budget_ms: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.min_budget_ms = min_budget_ms
        self.latency = LatencyBaseline()
        self.failures = 0
        self.opened_at: float | None = None
        self.trips = 0
        self._probe_in_flight = False
        self._clock = clock

    @property
    def state(self) -> State:
        """``closed``, ``open`` or ``half_open`` (an open breaker whose timeout has passed)."""
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.reset_timeout_s:
            return "half_open"
        return "open"

    def admit(self) -> bool:
        """Raise BreakerOpenError unless a call may go; True when the call is the half-open
        probe (pass that to :meth:`success` / :meth:`failure`)."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        retry_in = self.reset_timeout_s - (self._clock() - (self.opened_at or 0.0))
        raise BreakerOpenError(f"{self.name} circuit open (next probe in {max(retry_in, 0):.1f}s)")

    def release(self, probe: bool) -> None:
        """Give back an admitted probe whose call ended without an outcome (cancelled)."""
        if probe:
            self._probe_in_flight = False

    def success(self, ms: float, probe: bool = False, size: float = 1.0) -> None:
        """Record a call of ``size`` units of work that worked in ``ms`` milliseconds."""
        if probe:
            self._probe_in_flight = False
        self.latency.observe(ms, size)
        self.failures = 0
        self.opened_at = None

    def failure(self, probe: bool = False) -> None:
        """Record a failed or too slow call; opens the breaker at the threshold."""
        if probe:
            self._probe_in_flight = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            if self.opened_at is None or self.state == "half_open":
                self.trips += 1
            self.opened_at = self._clock()

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        ceiling_ms: float,
        adaptive: bool = False,
        size: float = 1.0,
    ) -> T:
        """Run ``fn()`` through the breaker within its budget; ``size``: the call's units of
        work, which an adaptive budget scales with (a batch of texts is a larger call).

        Raises:
            BreakerOpenError: the breaker is open (``fn`` was not called).
            TimeoutError: the call exceeded its budget (counted as a failure).
            Exception: whatever ``fn`` raised (counted as a failure).
        """
        probe = self.admit()
        budget_ms = (
            self.latency.budget_ms(self.min_budget_ms, ceiling_ms, size) if adaptive else ceiling_ms
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget_ms / 1000):
                result = await fn()
        except asyncio.CancelledError:
            self.release(probe)
            raise
        except TimeoutError:
            self.latency.timed_out()
            self.failure(probe)
            raise
        except BaseException:
            self.failure(probe)
            raise
        self.success((time.perf_counter() - started) * 1000, probe, size)
        return result

    def snapshot(self) -> dict[str, object]:
        """State for ``/healthz``."""
        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "trips": self.trips,
            "latency_ms": None if self.latency.srtt_ms is None else round(self.latency.srtt_ms, 2),
        }
