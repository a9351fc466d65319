"""Every example block in the README runs, as written (an example that is not run rots).

A block marked ``<!-- example -->`` is run line by line in a fresh folder, with
``talkface`` resolving to this checkout's command.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- example -->\s*```bash\n(.*?)```", re.S)


def example_commands() -> list[str]:
    return [line.strip() for block in _BLOCK.findall(README.read_text(encoding="utf-8"))
            for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_has_examples() -> None:
    assert len(example_commands()) >= 5


@pytest.mark.parametrize("command", example_commands())
def test_readme_example_runs(command: str, tmp_path: Path) -> None:
    words = shlex.split(command)
    assert words[0] == "talkface"
    if "report" in words:
        # The report example draws the trace the chat example wrote.
        subprocess.run([sys.executable, "-m", "talkface.cli", "chat", "--text", "Hi.",
                        "--trace", "trace.json", "-q"], cwd=tmp_path, check=True,
                       capture_output=True)
    result = subprocess.run([sys.executable, "-m", "talkface.cli", *words[1:]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for word in words:
        if word.endswith((".mp4", ".png", ".json")):
            assert (tmp_path / word).stat().st_size > 0, word
