"""The live turn stays in pieces a newcomer can read: one idea per class, a typed state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import talkface.conversation
from talkface.conversation._turns import ActiveTurn, TurnState

pytestmark = pytest.mark.unit

MAX_CLASS_LINES = 250


def test_no_class_in_the_conversation_package_is_over_250_lines() -> None:
    package = Path(talkface.conversation.__file__).parent
    sizes = {}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                sizes[f"{path.name}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert "_conversation.py:Conversation" in sizes
    too_big = {name: lines for name, lines in sizes.items() if lines > MAX_CLASS_LINES}
    assert not too_big, f"split these (lines): {too_big}"


def test_a_turns_state_is_one_enum_that_only_moves_forward() -> None:
    turn = ActiveTurn(record=None)  # type: ignore[arg-type]
    assert turn.state is TurnState.SPECULATIVE and not turn.confirmed
    turn.confirm()
    assert turn.state is TurnState.CONFIRMED and not turn.ended
    turn.answered()
    turn.end()  # an answered turn that is cut stays answered (its memory is amended)
    assert turn.state is TurnState.ANSWERED and turn.ended
    turn.confirm()
    assert turn.state is TurnState.ANSWERED
