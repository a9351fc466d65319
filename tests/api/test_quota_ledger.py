"""The quota ledger: counting, UTC day rollover, persistence, and the live-session meter.

Clocks are injected: days roll over by a fake unix clock, live minutes by a fake
monotonic one. The ledger's store is a real SQLite file in a temporary folder.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from talkface.api.realtime.quota import watch_live_quota
from talkface.api.schemas import ErrorEvent
from talkface.clock import ManualClock
from talkface.config import load_settings
from talkface.conversation import TurnRecord
from talkface.errors import ConfigError
from talkface.services._quota_store import UsageStore
from talkface.services.quota_settings import QuotaSettings
from talkface.services.quotas import LiveMeter, QuotaExceeded, QuotaLedger, TurnTokens
from talkface.services.render import RenderSpec
from talkface.trace import TurnTrace

pytestmark = pytest.mark.unit

KEY = "0123456789ab"
OTHER = "ba9876543210"
# 2025-03-01 23:59:00 UTC: a minute before midnight.
LATE_S = dt.datetime(2025, 3, 1, 23, 59, tzinfo=dt.UTC).timestamp()


class Clock:
    """A settable clock in seconds (unix or monotonic, as the test needs)."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def quotas(**default: Any) -> QuotaSettings:
    return QuotaSettings(default=default)


def test_usage_is_counted_per_key_and_refused_once_used_up() -> None:
    clock = Clock(LATE_S - 3600)
    ledger = QuotaLedger(quotas(llm_tokens=100), clock=clock)
    ledger.add(KEY, "llm_tokens", 60)
    ledger.check(KEY, ("llm_tokens",))  # 40 left
    ledger.add(KEY, "llm_tokens", 45)
    with pytest.raises(QuotaExceeded) as refused:
        ledger.check(KEY, ("llm_tokens",))
    error = refused.value
    assert error.http_status == 429 and error.code == "quota_exceeded"
    assert error.kind == "llm_tokens"
    assert "llm_tokens" in str(error) and "105 of 100 tokens" in str(error)
    assert "2025-03-02T00:00:00Z" in str(error)  # the next UTC midnight
    assert error.retry_after_s == pytest.approx(3660)
    ledger.check(OTHER, ("llm_tokens",))  # another key is not touched
    usage = {u.kind: u for u in ledger.usage(KEY)}
    assert usage["llm_tokens"].used == 105 and usage["llm_tokens"].remaining == 0
    assert usage["live_session_minutes"].limit is None  # unset: unlimited
    assert usage["live_session_minutes"].remaining is None


def test_a_new_utc_day_starts_from_zero(tmp_path: Path) -> None:
    clock = Clock(LATE_S)
    ledger = QuotaLedger(quotas(live_session_minutes=5), UsageStore(tmp_path), clock=clock)
    ledger.add(KEY, "live_session_minutes", 5)
    with pytest.raises(QuotaExceeded):
        ledger.check(KEY, ("live_session_minutes",))
    clock.now_s += 120  # 00:01 the next day, before any flush
    assert ledger.used(KEY, "live_session_minutes") == 0
    ledger.check(KEY, ("live_session_minutes",))
    ledger.add(KEY, "live_session_minutes", 1)
    ledger.flush()
    store = UsageStore(tmp_path)
    assert store.day_totals("2025-03-01") == {(KEY, "live_session_minutes"): 5.0}
    assert store.day_totals("2025-03-02") == {(KEY, "live_session_minutes"): 1.0}
    assert ledger.used(KEY, "live_session_minutes") == 1


def test_usage_survives_a_reopen(tmp_path: Path) -> None:
    clock = Clock(LATE_S - 7200)
    first = QuotaLedger(quotas(rendered_video_minutes=2), UsageStore(tmp_path), clock=clock)
    first.rendered(KEY, 90.0)
    first.add(OTHER, "llm_tokens", 12)
    first.flush()
    first.rendered(KEY, 30.0)
    first.flush()

    UsageStore(tmp_path).add({("2024-11-30", KEY, "llm_tokens"): 9.0})  # 91 days before
    again = QuotaLedger(quotas(rendered_video_minutes=2), UsageStore(tmp_path), clock=clock)
    assert again.used(KEY, "rendered_video_minutes") == 0  # nothing until it loads
    again.load()  # what a server does when it starts
    assert again.used(KEY, "rendered_video_minutes") == pytest.approx(2.0)
    assert again.used(OTHER, "llm_tokens") == 12
    with pytest.raises(QuotaExceeded, match="rendered_video_minutes"):
        again.check_render(KEY, RenderSpec(kind="audio"))
    assert UsageStore(tmp_path).day_totals("2024-11-30") == {}  # old days are forgotten


def test_processes_sharing_a_data_dir_see_each_others_usage(tmp_path: Path) -> None:
    clock = Clock(LATE_S - 7200)
    one = QuotaLedger(quotas(llm_tokens=100), UsageStore(tmp_path), clock=clock)
    two = QuotaLedger(quotas(llm_tokens=100), UsageStore(tmp_path), clock=clock)
    one.add(KEY, "llm_tokens", 70)
    two.add(KEY, "llm_tokens", 20)
    one.flush()
    two.flush()
    assert two.used(KEY, "llm_tokens") == 90
    two.add(KEY, "llm_tokens", 5)  # counted here, not yet written
    one.flush()
    assert one.used(KEY, "llm_tokens") == 90
    two.flush()
    one.flush()
    assert one.used(KEY, "llm_tokens") == two.used(KEY, "llm_tokens") == 95


def test_what_a_failed_flush_could_not_write_is_written_next_time(tmp_path: Path) -> None:
    class FlakyStore(UsageStore):
        fail = True

        def add(self, deltas: Any) -> None:
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
            super().add(deltas)

    store = FlakyStore(tmp_path)
    ledger = QuotaLedger(quotas(), store, clock=Clock(LATE_S - 7200))
    ledger.add(KEY, "llm_tokens", 7)
    with pytest.raises(sqlite3.OperationalError):
        ledger.flush()
    assert ledger.used(KEY, "llm_tokens") == 7
    store.fail = False
    ledger.add(KEY, "llm_tokens", 3)
    ledger.flush()
    assert UsageStore(tmp_path).day_totals("2025-03-01") == {(KEY, "llm_tokens"): 10.0}


def test_a_newer_usage_database_is_refused_with_advice(tmp_path: Path) -> None:
    UsageStore(tmp_path)
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer talkface"):
        UsageStore(tmp_path)


def test_render_estimates_refuse_only_texts_that_certainly_do_not_fit() -> None:
    ledger = QuotaLedger(quotas(rendered_video_minutes=1), clock=Clock(LATE_S - 7200))
    ledger.rendered(KEY, 50.0)  # 10 s left
    ledger.check_render(KEY, RenderSpec(kind="text", text="A short sentence."))
    ledger.check_render(KEY, RenderSpec(kind="audio"))  # its length is not known yet
    with pytest.raises(QuotaExceeded, match="needs about") as refused:
        ledger.check_render(KEY, RenderSpec(kind="text", text="word " * 200))  # >= 50 s
    assert refused.value.kind == "rendered_video_minutes"


def test_per_key_limits_override_the_default() -> None:
    settings = QuotaSettings.model_validate({
        "default": {"llm_tokens": 1000, "live_session_minutes": 30},
        "per_key": {KEY: {"llm_tokens": 5}, OTHER: {"llm_tokens": None}},
    })
    assert settings.limits_for(KEY).llm_tokens == 5
    assert settings.limits_for(KEY).live_session_minutes == 30  # kept from the default
    assert settings.limits_for(OTHER).llm_tokens is None  # null lifts it
    assert settings.limits_for("ffffffffffff").llm_tokens == 1000


def test_per_key_takes_key_ids_and_never_echoes_a_raw_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as refused:
        QuotaSettings.model_validate({"per_key": {"tfk_my_secret_key": {"llm_tokens": -1}}})
    assert "tfk_my_secret_key" not in str(refused.value)
    assert "key id" in str(refused.value)
    monkeypatch.setenv(f"TALKFACE_SERVER__QUOTAS__PER_KEY__{KEY}__LLM_TOKENS", "42")
    monkeypatch.setenv("TALKFACE_SERVER__QUOTAS__DEFAULT__RENDERED_VIDEO_MINUTES", "3")
    settings = load_settings().server.quotas
    assert settings.limits_for(KEY).llm_tokens == 42
    assert settings.limits_for(KEY).rendered_video_minutes == 3
    monkeypatch.setenv("TALKFACE_SERVER__QUOTAS__PER_KEY__tfk_secret_0001__LLM_TOKENS", "1")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    assert "tfk_secret_0001" not in str(bad.value)


def test_the_documented_quota_config_loads(tmp_path: Path) -> None:
    """The TOML example of docs/api.md's Quotas section, as written."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text("utf-8")
    section = docs[docs.index("## Quotas"):]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    config = tmp_path / "talkface.toml"
    config.write_text(example.group(1), encoding="utf-8")
    settings = load_settings(config).server.quotas
    assert settings.limits_for("3f2a9c0d41b7").llm_tokens == 1_000_000
    assert settings.limits_for("3f2a9c0d41b7").live_session_minutes == 60
    assert settings.limits_for(KEY).llm_tokens == 200_000


def test_a_live_meter_counts_minutes_and_looks_again_before_they_run_out() -> None:
    settings = QuotaSettings(default={"live_session_minutes": 1, "llm_tokens": 500},
                             live_check_interval_s=10.0)
    ledger = QuotaLedger(settings, clock=Clock(LATE_S - 7200))
    monotonic = Clock(100.0)
    meter = LiveMeter(ledger, KEY, clock=monotonic)
    meter.start()
    assert meter.next_check_s() == 10.0
    monotonic.now_s += 10.0
    meter.update(new_tokens=120)
    assert ledger.used(KEY, "live_session_minutes") == pytest.approx(10 / 60)
    assert ledger.used(KEY, "llm_tokens") == 120
    assert meter.exceeded() is None
    monotonic.now_s += 45.0
    meter.update()
    assert meter.next_check_s() == pytest.approx(5.0)  # sooner than the interval
    monotonic.now_s += 5.0
    meter.finish()
    exceeded = meter.exceeded()
    assert exceeded is not None and exceeded.kind == "live_session_minutes"
    with pytest.raises(QuotaExceeded, match="live_session_minutes"):
        ledger.admit_live(KEY)


def test_a_live_session_is_refused_when_its_tokens_are_used_up() -> None:
    ledger = QuotaLedger(quotas(llm_tokens=10), clock=Clock(LATE_S - 7200))
    ledger.admit_live(KEY)
    ledger.add(KEY, "llm_tokens", 10)
    with pytest.raises(QuotaExceeded, match="llm_tokens"):
        ledger.admit_live(KEY)


def _record(turn_id: int, *, prompt: int = 0, reply: str = "") -> TurnRecord:
    record = TurnRecord(turn_id=turn_id, source="text", trace=TurnTrace.start(ManualClock()))
    record.prompt_tokens, record.reply = prompt, reply
    return record


def test_turn_tokens_are_counted_once_each() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text.split())

    tokens = TurnTokens(count)
    first = _record(1)
    assert tokens.new_tokens([first]) == 0  # still being answered
    first.prompt_tokens, first.reply = 30, "one two three"
    second = _record(2, prompt=40, reply="four five")
    assert tokens.new_tokens([first, second]) == 33 + 42
    assert tokens.new_tokens([first, second]) == 0
    assert counted == ["one two three", "four five"]  # not tokenized again
    # The conversation no longer keeps the first turn: it is forgotten, not counted again.
    assert tokens.new_tokens([second]) == 0
    assert tokens.new_tokens([second, _record(3, prompt=5, reply="six")]) == 5 + 1
    assert sorted(tokens._seen) == [2, 3]


# --- the watcher every live transport runs -------------------------------------------------


class _Backend:
    @staticmethod
    def count_tokens(text: str) -> int:
        return len(text.split())


class _Runtime:
    async def llm_backend(self) -> _Backend:
        return _Backend()


@dataclass
class _Conversation:
    runtime: _Runtime = field(default_factory=_Runtime)
    turns: list[TurnRecord] = field(default_factory=list)


@dataclass
class _Live:
    meter: LiveMeter | None


@dataclass
class _Session:
    """What the watcher uses of a transport's session: a scripted stand-in."""

    live: _Live
    conversation: _Conversation = field(default_factory=_Conversation)
    session_id: str = "s_test"
    errors: list[ErrorEvent] = field(default_factory=list)

    def send_error(self, exc: QuotaExceeded) -> None:
        self.errors.append(ErrorEvent(code=exc.code, message=str(exc),
                                      retryable=exc.retryable,
                                      retry_after_s=exc.retry_after_s))


class _Ticking:
    """A monotonic clock that moves on 2 s each time it is read."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        self.now_s += 2.0
        return self.now_s


async def test_a_running_session_is_ended_with_an_error_when_its_minutes_run_out() -> None:
    settings = QuotaSettings(default={"live_session_minutes": 0.1},  # 6 s
                             live_check_interval_s=0.001)
    ledger = QuotaLedger(settings, clock=Clock(LATE_S - 7200))
    session = _Session(_Live(LiveMeter(ledger, KEY, clock=_Ticking())))
    session.conversation.turns.append(_record(1, prompt=10, reply="hi there"))
    reasons: list[str] = []
    async with asyncio.timeout(30):
        await watch_live_quota(session, reasons.append)  # type: ignore[arg-type]
    assert len(reasons) == 1 and "live_session_minutes" in reasons[0]
    [error] = session.errors
    assert error.code == "quota_exceeded" and "resets at" in error.message
    assert error.retry_after_s == pytest.approx(7200 + 60, abs=1)
    assert ledger.used(KEY, "live_session_minutes") >= 0.1
    assert ledger.used(KEY, "llm_tokens") == 12  # the turn's tokens, once


async def test_a_session_without_quotas_is_not_watched() -> None:
    session = _Session(_Live(None))
    await watch_live_quota(session, lambda reason: None)  # type: ignore[arg-type]
    assert session.errors == []
