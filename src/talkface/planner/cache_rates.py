"""Cache hit rates a plan uses, and where each came from.

talkface has no FAQ, TTS or animation cache yet, so a plan assumes none unless told:
``talkface plan --cache-stats FILE`` gives measured rates (JSON), ``--faq-cache-hit-rate``
and the like assume rates, and a workload file may set them too. The report says which.

A cache-stats file::

    {"faq_cache_hit_rate": 0.04, "tts_cache_hit_rate": 0.12, "animation_cache_hit_rate": 0.03}

(any subset of the three keys, each a share in [0, 1]).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from talkface.errors import ConfigError
from talkface.planner.workload import Workload

CACHE_RATES = ("faq_cache_hit_rate", "tts_cache_hit_rate", "animation_cache_hit_rate")
NO_CACHE = "none: the product has no such cache yet"
COMMAND_LINE = "assumed: given on the command line"


def load_cache_stats(path: str | Path) -> dict[str, float]:
    """The measured hit rates in ``path``.

    Raises:
        ConfigError: the file is missing, not JSON, or holds an unknown key or a rate
            outside [0, 1] (the message names it).
    """
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read cache stats {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cache stats {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"cache stats {path} must be a JSON object of {', '.join(CACHE_RATES)}")
    unknown = sorted(set(data) - set(CACHE_RATES))
    if unknown:
        raise ConfigError(
            f"cache stats {path}: unknown key(s) {', '.join(unknown)}; "
            f"expected any of {', '.join(CACHE_RATES)}"
        )
    rates = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"cache stats {path}: {key} must be a share in [0, 1], not {value!r}")
        rates[key] = float(value)
    return rates


def default_sources(workload: Workload, given_in: str = "the workload") -> dict[str, str]:
    """Sources when only the workload says anything: a rate it sets is assumed."""
    return {
        key: (
            f"assumed: given in {given_in}"
            if key in workload.model_fields_set and getattr(workload, key) > 0
            else NO_CACHE
        )
        for key in CACHE_RATES
    }


def apply_cache_rates(
    workload: Workload,
    *,
    workload_file: str | Path | None = None,
    stats_file: str | Path | None = None,
    command_line: Mapping[str, float | None] | None = None,
) -> tuple[Workload, dict[str, str]]:
    """The workload with its cache rates set, and where each came from.

    The command line wins over the stats file, which wins over the workload.

    Raises:
        ConfigError: the stats file is unusable, or the rates are inconsistent.
    """
    sources = default_sources(
        workload, f"workload {workload_file}" if workload_file else "the workload"
    )
    rates: dict[str, float] = {}
    if stats_file is not None:
        for key, value in load_cache_stats(stats_file).items():
            rates[key] = value
            sources[key] = f"measured from {stats_file}"
    for key, given in (command_line or {}).items():
        if given is not None:
            rates[key] = given
            sources[key] = COMMAND_LINE
    if not rates:
        return workload, sources
    try:
        updated = Workload.model_validate({**workload.model_dump(exclude_unset=True), **rates})
    except ValueError as exc:
        raise ConfigError(f"cache hit rates: {exc}") from None
    return updated, sources
