"""Cache keys: a SHA-256 of the canonical JSON of everything that shapes the result."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

FORMAT_VERSION = 1
"""Bumped when what an entry holds, or how talkface renders, changes incompatibly."""


def talkface_version() -> str:
    try:
        return version("talkface")
    except PackageNotFoundError:
        return "unknown"


def cache_key(kind: str, parts: dict[str, Any]) -> str:
    """The hex key of ``parts`` for cache ``kind``."""
    payload = {"kind": kind, "format": FORMAT_VERSION, "talkface": talkface_version(), **parts}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
