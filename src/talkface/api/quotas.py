"""The daily quotas on the server: their ledger's life, metrics, and chat completions.

The ledger (:class:`~talkface.services.quotas.QuotaLedger`) opens with the server
(:func:`quota_ledger`, the lifespan of :mod:`talkface.api.routes.usage`), loads today's
usage from ``usage.sqlite3`` under ``server.data_dir``, writes in batches while the server
runs, and writes what is left when it stops. Live sessions are metered by
:mod:`talkface.api.realtime.quota`; render jobs by their queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from talkface.api.auth import Principal
from talkface.api.metrics import metrics_of
from talkface.api.state import ServerState
from talkface.errors import ConfigError
from talkface.services._quota_store import UsageStore
from talkface.services.chat import ChatRun
from talkface.services.quota_settings import QuotaKind
from talkface.services.quotas import QuotaLedger
from talkface.services.store import default_data_dir

logger = logging.getLogger(__name__)


class QuotaMetrics:
    """``talkface_quota_used_total{kind}`` and ``talkface_quota_exceeded_total{kind}``:
    by quota kind only (no key ids: a label per key would grow without bound)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.used = Counter(
            "talkface_quota_used",
            "Usage counted against daily quotas, in each kind's unit (minutes or tokens).",
            ["kind"], registry=registry,
        )
        self.exceeded = Counter(
            "talkface_quota_exceeded",
            "Requests refused and live sessions ended because a daily quota was used up.",
            ["kind"], registry=registry,
        )

    def quota_used(self, kind: QuotaKind, amount: float) -> None:
        """Add ``amount`` (minutes or tokens) of ``kind`` to the used-quota counter."""
        self.used.labels(kind).inc(amount)

    def quota_exceeded(self, kind: QuotaKind) -> None:
        """Count one request refused because ``kind``'s quota is used up."""
        self.exceeded.labels(kind).inc()


@contextlib.asynccontextmanager
async def quota_ledger(app: FastAPI) -> AsyncIterator[None]:
    """Open the ledger for as long as the server runs; hand it to the doors that use it."""
    state: ServerState = app.state.talkface
    server = state.settings.server
    root = (server.data_dir or default_data_dir()).expanduser()
    try:
        store = await asyncio.to_thread(UsageStore, root)
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        raise ConfigError(f"server.data_dir {root} cannot hold quota usage ({exc}); "
                          "point it at a writable folder") from None
    metrics = getattr(app.state, "quota_metrics", None)
    if metrics is None:  # one set per app, however often its lifespan runs
        metrics = app.state.quota_metrics = QuotaMetrics(metrics_of(app).registry)
    ledger = QuotaLedger(server.quotas, store, observer=metrics)
    await asyncio.to_thread(ledger.load)  # today's usage so far
    state.quotas = ledger
    state.sessions.quotas = ledger
    flusher = asyncio.create_task(ledger.run_flusher(), name="quota-flusher")
    try:
        yield
    finally:
        flusher.cancel()
        await asyncio.wait([flusher])
        try:
            await asyncio.to_thread(ledger.flush)
        except Exception:
            logger.exception("writing quota usage at shutdown failed")


class ChatQuota:
    """The LLM-token quota around one chat completion: checked when it is created,
    charged once when the generation is over.

    Raises:
        QuotaExceeded: (at creation) the key's tokens are used up today.
    """

    def __init__(self, ledger: QuotaLedger | None, key_id: str) -> None:
        self._ledger = ledger
        self._key_id = key_id
        self._charged = False
        if ledger is not None:
            ledger.check(key_id, ("llm_tokens",))

    def charge(self, run: ChatRun) -> None:
        """Count ``run``'s tokens (once; a generation cut short has no stats to count)."""
        if self._ledger is not None and not self._charged:
            self._charged = True
            self._ledger.add_generation(self._key_id, run.stats)

    async def counted(self, events: AsyncIterator[str], run: ChatRun) -> AsyncIterator[str]:
        """``events`` (a streamed reply), charging ``run`` when they end or the client
        goes away."""
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            self.charge(run)


def chat_quota(state: ServerState, principal: Principal) -> ChatQuota:
    """The quota of a chat completion by ``principal`` (429 now if it is used up)."""
    return ChatQuota(state.quotas, principal.key_id)
