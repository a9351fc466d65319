"""Daily quotas per API key: live-session minutes, rendered video minutes, LLM tokens.

:class:`QuotaLedger` is the one place that decides whether a key may start something
(:meth:`QuotaLedger.check`) and that counts what it used (:meth:`QuotaLedger.add`). Every
door calls it: a live session when it starts and while it runs (:class:`LiveMeter`), a
render job when it is submitted and when its video is done, a chat completion before it
starts and after it ends. Days are UTC days; a used-up quota answers 429 with
``Retry-After`` set to the next UTC midnight.

Usage is counted in memory and written to :class:`~talkface.services._quota_store.UsageStore`
in batches (:meth:`QuotaLedger.flush`: every ``flush_interval_s``, when a live session
ends, and at shutdown), so a live session never touches SQLite per frame. A flush also
reads back the day's totals, which brings in what other server processes on the same
data directory used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from talkface.errors import RateLimited
from talkface.services._quota_store import KEEP_DAYS
from talkface.services.quota_settings import QUOTA_KINDS, QUOTA_UNITS, QuotaKind, QuotaSettings

if TYPE_CHECKING:
    from talkface.conversation import TurnRecord
    from talkface.llm.base import GenerationStats
    from talkface.services._quota_store import UsageKey, UsageStore
    from talkface.services.render import RenderSpec

logger = logging.getLogger(__name__)

LIVE_KINDS: tuple[QuotaKind, ...] = ("live_session_minutes", "llm_tokens")
"""A live session needs both: it is refused, or ended, when either is used up."""
RENDER_S_PER_CHAR = 0.05
"""Lower bound of the speaking time of one character (fast English): a text render's
estimate at submission, which only refuses jobs that certainly do not fit."""
_MIN_CHECK_S = 0.05


class QuotaExceeded(RateLimited):
    """A daily quota of this API key is used up; it resets at the next UTC midnight.

    Attributes:
        kind: which quota.
        resets_at_s: unix time of the reset.
    """

    code = "quota_exceeded"

    def __init__(self, message: str, *, kind: QuotaKind, resets_at_s: float,
                 retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.kind = kind
        self.resets_at_s = resets_at_s


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaUsage:
    """One quota of one key today.

    Attributes:
        kind: which quota.
        used: used today, in the quota's unit (:data:`QUOTA_UNITS`).
        limit: the daily limit; None when unlimited.
        resets_at_s: unix time of the next UTC midnight.
    """

    kind: QuotaKind
    used: float
    limit: float | None
    resets_at_s: float

    @property
    def remaining(self) -> float | None:
        """What is left of the limit today, or None when there is no limit."""
        return None if self.limit is None else max(0.0, self.limit - self.used)


class QuotaObserver(Protocol):
    """Told what was used and what was refused (metrics)."""

    def quota_used(self, kind: QuotaKind, amount: float) -> None:
        """``amount`` (minutes or tokens) of ``kind`` was used."""

    def quota_exceeded(self, kind: QuotaKind) -> None:
        """A request was refused: ``kind``'s quota is used up."""


def utc_day(at_s: float) -> str:
    """The UTC day of unix time ``at_s``, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(at_s, tz=dt.UTC).date().isoformat()


def next_utc_midnight_s(at_s: float) -> float:
    """Unix time of the first UTC midnight after ``at_s``."""
    day = dt.datetime.fromtimestamp(at_s, tz=dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp()


def estimate_render_minutes(spec: RenderSpec) -> float:
    """A lower bound of a render's video length, known at submission (0 for audio jobs:
    their length is counted when they are done)."""
    if spec.kind != "text" or not spec.text:
        return 0.0
    return len(spec.text) * RENDER_S_PER_CHAR / spec.speed / 60.0


class QuotaLedger:
    """Usage per key id, quota kind and UTC day, checked against ``settings``.

    Methods other than :meth:`flush` and :meth:`run_flusher` never block: call them on
    the event loop.

    Args:
        settings: the limits (``server.quotas``).
        store: where usage is kept across restarts (None: in memory only).
        observer: told what was used and refused (metrics).
        clock: unix time (injectable for tests: days roll over by it).
    """

    def __init__(self, settings: QuotaSettings, store: UsageStore | None = None, *,
                 observer: QuotaObserver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._store = store
        self._observer = observer
        self._clock = clock
        self._lock = threading.Lock()  # totals and pending: the loop adds, a thread flushes
        self._flush_lock = threading.Lock()  # one flush at a time
        self._day = utc_day(clock())
        self._totals: dict[tuple[str, str], float] = {}  # today's, by (key id, kind)
        self._pending: dict[UsageKey, float] = {}  # not yet written, by (day, key id, kind)
        self._flush_soon = asyncio.Event()

    # --- reading and checking --------------------------------------------------------------

    def used(self, key_id: str, kind: QuotaKind) -> float:
        """What ``key_id`` used of ``kind`` today."""
        with self._lock:
            self._roll()
            return self._totals.get((key_id, kind), 0.0)

    def usage(self, key_id: str) -> list[QuotaUsage]:
        """Every quota of ``key_id`` today."""
        limits = self.settings.limits_for(key_id)
        resets_at_s = next_utc_midnight_s(self._clock())
        return [QuotaUsage(kind=kind, used=self.used(key_id, kind), limit=limits.limit(kind),
                           resets_at_s=resets_at_s) for kind in QUOTA_KINDS]

    def remaining(self, key_id: str, kind: QuotaKind) -> float | None:
        """What is left of ``kind`` today; None when unlimited."""
        limit = self.settings.limits_for(key_id).limit(kind)
        return None if limit is None else max(0.0, limit - self.used(key_id, kind))

    def check(self, key_id: str, kinds: Sequence[QuotaKind], *, need: float = 0.0) -> None:
        """Refuse if any of ``kinds`` is used up for ``key_id`` today (or, with ``need``,
        if the first kind has less than ``need`` left).

        Raises:
            QuotaExceeded: names the quota, what was used, and when it resets.
        """
        for index, kind in enumerate(kinds):
            remaining = self.remaining(key_id, kind)
            wanted = need if index == 0 else 0.0
            if remaining is None or (remaining > 0 and remaining >= wanted):
                continue
            raise self._exceeded(key_id, kind, wanted)

    def _exceeded(self, key_id: str, kind: QuotaKind, need: float) -> QuotaExceeded:
        now = self._clock()
        resets_at_s = next_utc_midnight_s(now)
        limit = self.settings.limits_for(key_id).limit(kind) or 0.0
        used, unit = self.used(key_id, kind), QUOTA_UNITS[kind]
        reset = dt.datetime.fromtimestamp(resets_at_s, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if used < limit:
            what = (f"needs about {need:.1f} {unit} but only {limit - used:.1f} of the "
                    f"{limit:g} are left today")
        else:
            what = f"is used up ({used:.{0 if unit == 'tokens' else 1}f} of {limit:g} {unit})"
        if self._observer is not None:
            self._observer.quota_exceeded(kind)
        return QuotaExceeded(
            f"the daily quota {kind} of this API key {what}; it resets at {reset} (UTC "
            "midnight): try again then, or ask for a higher limit",
            kind=kind, resets_at_s=resets_at_s, retry_after_s=max(1.0, resets_at_s - now),
        )

    # --- counting --------------------------------------------------------------------------

    def add(self, key_id: str, kind: QuotaKind, amount: float) -> None:
        """Count ``amount`` (in the quota's unit) of ``kind`` for ``key_id`` today."""
        if amount <= 0:
            return
        with self._lock:
            self._roll()
            self._totals[(key_id, kind)] = self._totals.get((key_id, kind), 0.0) + amount
            pending_key = (self._day, key_id, kind)
            self._pending[pending_key] = self._pending.get(pending_key, 0.0) + amount
        if self._observer is not None:
            self._observer.quota_used(kind, amount)

    def add_generation(self, key_id: str, stats: GenerationStats | None) -> None:
        """Count a finished generation's prompt and completion tokens."""
        if stats is not None:
            self.add(key_id, "llm_tokens", stats.prompt_tokens + stats.completion_tokens)

    def check_render(self, key_id: str, spec: RenderSpec) -> None:
        """Refuse a render when the day's video minutes are used up, or certainly too few.

        Raises:
            QuotaExceeded.
        """
        self.check(key_id, ("rendered_video_minutes",), need=estimate_render_minutes(spec))

    def rendered(self, key_id: str, duration_s: float) -> None:
        """Count a finished render's video."""
        self.add(key_id, "rendered_video_minutes", duration_s / 60.0)

    def admit_live(self, key_id: str) -> LiveMeter:
        """A meter for a new live session of ``key_id``.

        Raises:
            QuotaExceeded: its live minutes or LLM tokens are used up today.
        """
        self.check(key_id, LIVE_KINDS)
        return LiveMeter(self, key_id)

    def _roll(self) -> None:
        """Start a new day's totals at UTC midnight (pending writes keep their day)."""
        day = utc_day(self._clock())
        if day != self._day:
            self._day, self._totals = day, {}

    # --- persistence -----------------------------------------------------------------------

    def request_flush(self) -> None:
        """Write soon rather than at the next interval (a live session ended)."""
        self._flush_soon.set()

    def load(self) -> None:
        """Read today's usage and forget days older than
        :data:`~talkface.services._quota_store.KEEP_DAYS` (blocking: a server's start)."""
        if self._store is not None:
            self._store.purge(utc_day(self._clock() - KEEP_DAYS * 86400.0))
        self.flush()

    def flush(self) -> None:
        """Write what was counted since the last flush and read back today's totals
        (blocking: run it in a worker thread). What cannot be written is kept for the
        next flush."""
        if self._store is None:
            with self._lock:
                self._pending.clear()
            return
        with self._flush_lock:
            with self._lock:
                deltas, self._pending = self._pending, {}
                day = self._day
            try:
                self._store.add(deltas)
            except BaseException:
                with self._lock:
                    for key, amount in deltas.items():
                        self._pending[key] = self._pending.get(key, 0.0) + amount
                raise
            stored = self._store.day_totals(day)
            with self._lock:
                self._roll()
                if self._day == day:
                    # What the store holds (every process's), plus what was counted here
                    # while this flush ran.
                    totals = dict(stored)
                    for (pending_day, key_id, kind), amount in self._pending.items():
                        if pending_day == day:
                            totals[(key_id, kind)] = totals.get((key_id, kind), 0.0) + amount
                    self._totals = totals

    async def run_flusher(self) -> None:
        """Flush every ``flush_interval_s`` (or sooner when asked) until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self.settings.flush_interval_s):
                    await self._flush_soon.wait()
            except TimeoutError:
                pass
            self._flush_soon.clear()
            try:
                await asyncio.to_thread(self.flush)
            except Exception:  # a full disk must not stop the counting; it is retried
                logger.exception("writing quota usage failed; retrying in %g s",
                                 self.settings.flush_interval_s)


class LiveMeter:
    """One live session's use of its key's quotas: its minutes, and its turns' tokens.

    Call :meth:`start` when the session starts serving, :meth:`update` now and then
    (at most every :meth:`next_check_s`), and :meth:`finish` when it ends.

    Args:
        ledger: the server's ledger.
        key_id: the session's key.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, ledger: QuotaLedger, key_id: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger = ledger
        self.key_id = key_id
        self._clock = clock
        self._last_s: float | None = None

    def start(self) -> None:
        """The session starts serving: its minutes count from now."""
        self._last_s = self._clock()

    def update(self, new_tokens: int = 0) -> None:
        """Count the minutes since the last update, and ``new_tokens`` LLM tokens."""
        now_s = self._clock()
        if self._last_s is not None:
            self.ledger.add(self.key_id, "live_session_minutes", (now_s - self._last_s) / 60.0)
        self._last_s = now_s
        self.ledger.add(self.key_id, "llm_tokens", new_tokens)

    def exceeded(self) -> QuotaExceeded | None:
        """Why the session must end now, or None while its quotas last."""
        try:
            self.ledger.check(self.key_id, LIVE_KINDS)
        except QuotaExceeded as exc:
            return exc
        return None

    def next_check_s(self) -> float:
        """When to look again: the check interval, or sooner when the minutes run out."""
        interval_s = self.ledger.settings.live_check_interval_s
        remaining = self.ledger.remaining(self.key_id, "live_session_minutes")
        if remaining is None:
            return interval_s
        return max(_MIN_CHECK_S, min(interval_s, remaining * 60.0))

    def finish(self, new_tokens: int = 0) -> None:
        """The session ended: count its last stretch, and have it written soon."""
        self.update(new_tokens)
        self._last_s = None
        self.ledger.request_flush()


class TurnTokens:
    """LLM tokens of a live session's turns, each counted once.

    A turn's prompt tokens come from its generation's stats; its completion tokens are
    counted from its reply text (the turn record does not keep the completion count).

    Args:
        count_tokens: the LLM backend's tokenizer count.
    """

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self._count = count_tokens
        self._seen: dict[int, tuple[int, int, int]] = {}  # turn: prompt, reply chars, tokens

    def new_tokens(self, turns: Iterable[TurnRecord]) -> int:
        """Tokens of ``turns`` not counted before (a turn's count may grow once it ends).

        Pass every turn still kept each time: a turn left out is taken as gone for good
        (a conversation keeps only its latest turns), and forgotten.
        """
        added = 0
        kept: set[int] = set()
        for record in turns:
            kept.add(record.turn_id)
            prompt, chars = record.prompt_tokens, len(record.reply)
            seen = self._seen.get(record.turn_id)
            if seen is not None and seen[:2] == (prompt, chars):
                continue
            tokens = prompt + (self._count(record.reply) if chars else 0)
            before = seen[2] if seen is not None else 0
            added += max(0, tokens - before)
            self._seen[record.turn_id] = (prompt, chars, max(tokens, before))
        for gone in self._seen.keys() - kept:
            del self._seen[gone]
        return added
