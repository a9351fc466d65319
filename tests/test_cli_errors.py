"""What every command does with an error: one line, an exit code, never a traceback."""

from __future__ import annotations

import pytest

from talkface.commands._common import EXIT_BAD_INPUT, EXIT_FAILED, handle_errors
from talkface.errors import BackendError, BadInput

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("error", "code"), [
    (BadInput("nothing to say: the message is empty"), EXIT_BAD_INPUT),
    (BackendError("the LLM server at x is not reachable", retryable=True), EXIT_FAILED),
])
def test_one_error_out_of_a_task_group_is_reported_as_itself(
    capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    @handle_errors
    def command() -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("", [error])])

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"error: {error}"]
