"""Shared test fixtures: real models are loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Model runtimes print their own chatter to stderr; tests read stderr of the CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files worth looking at (videos, screenshots): test-artifacts/."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's ~/.cache/talkface (prepared avatars, models)."""
    if "TALKFACE_CACHE_DIR" not in os.environ:
        os.environ["TALKFACE_CACHE_DIR"] = str(tmp_path_factory.mktemp("talkface-cache"))
