"""The llama-cpp-python internals talkface relies on are still there (pinned 0.3.36).

When an upgrade removes or renames one, these fail naming it: fix
``talkface/llm/_llama_internals.py``, the one module that uses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from talkface.llm import _llama_internals as internals
from talkface.llm.models import SMOLLM2, model_path

UPGRADE_HINT = (
    "llama-cpp-python no longer has {}: talkface/llm/_llama_internals.py must be updated "
    "for this version (written against 0.3.36)"
)


@pytest.mark.unit
def test_the_low_level_functions_exist() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    missing = [name for name in internals.MODULE_FUNCTIONS if not hasattr(llama_cpp, name)]
    assert not missing, UPGRADE_HINT.format(", ".join(f"llama_cpp.{m}" for m in missing))


@pytest.mark.unit
def test_a_missing_attribute_is_named() -> None:
    pytest.importorskip("llama_cpp")
    assert "Llama._input_ids" in internals.missing_internals(object())


@pytest.fixture(scope="module")
def llama() -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(model_path(SMOLLM2)), n_ctx=256, verbose=False)


def next_scores(llama: Any, token: int) -> np.ndarray:
    llama.eval([token])
    return np.array(llama.scores[internals.evaluated_count(llama) - 1])


@pytest.mark.integration
def test_a_loaded_model_has_every_internal(llama: Any) -> None:
    missing = internals.missing_internals(llama)
    assert not missing, UPGRADE_HINT.format(", ".join(missing))


@pytest.mark.integration
def test_a_saved_sequence_restores_the_same_state(llama: Any, tmp_path: Path) -> None:
    """Save a conversation to a file, evaluate another, restore: the model continues
    exactly as if it had never been swapped out."""
    prompt = llama.tokenize(b"The river that runs through Paris is called the", add_bos=True)
    other = llama.tokenize(b"Rice needs twice its volume of water.", add_bos=True)
    llama.reset()
    llama.eval(prompt)
    assert internals.evaluated_tokens(llama) == prompt
    assert internals.evaluated_tokens(llama, 3) == prompt[:3]
    saved = internals.save_sequence(llama, tmp_path / "state.kv")
    assert saved.size_bytes == saved.path.stat().st_size > 0
    assert list(saved.token_ids) == prompt
    expected = next_scores(llama, other[1])

    llama.reset()
    llama.eval(other)
    assert internals.restore_sequence(llama, saved)
    assert internals.evaluated_tokens(llama) == prompt
    np.testing.assert_allclose(next_scores(llama, other[1]), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.integration
def test_a_lost_state_file_empties_the_cache(llama: Any, tmp_path: Path) -> None:
    """A state whose file is gone (or cut short) is refused, and the next prompt is then
    evaluated afresh rather than on a half-restored cache."""
    prompt = llama.tokenize(b"Bread rises because yeast makes gas.", add_bos=True)
    llama.reset()
    llama.eval(prompt)
    saved = internals.save_sequence(llama, tmp_path / "state.kv")
    saved.path.write_bytes(saved.path.read_bytes()[: saved.size_bytes // 2])
    assert not internals.restore_sequence(llama, saved)
    assert internals.evaluated_count(llama) == 0
    saved.path.unlink()
    assert not internals.restore_sequence(llama, saved)
    assert internals.evaluated_count(llama) == 0
