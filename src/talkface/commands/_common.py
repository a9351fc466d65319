"""What every command shares: one-line errors, exit codes, quiet model runtimes."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console

from talkface.errors import BadInput, ConfigError, TalkfaceError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def quiet_native_logs() -> None:
    """Keep model runtimes' own chatter (TFLite, onnxruntime, ctranslate2) off the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    logging.getLogger("piper").setLevel(logging.ERROR)


def fail(message: str, code: int) -> None:
    """Print ``error: message`` in one line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise SystemExit(code)


def handle_errors(command: F) -> F:
    """Turn talkface errors into one line and an exit code, never a traceback.

    Set ``TALKFACE_DEBUG=1`` to see the traceback of an unexpected error.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _unwrapped(command, *args, **kwargs)
        except (BadInput, ConfigError) as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except TalkfaceError as exc:
            fail(str(exc), EXIT_FAILED)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise SystemExit(EXIT_INTERRUPTED) from None
        except (SystemExit, *click_exceptions()):
            raise
        except Exception as exc:
            if os.environ.get("TALKFACE_DEBUG"):
                raise
            fail(
                f"unexpected {type(exc).__name__}: {exc} (run with TALKFACE_DEBUG=1 for "
                "details, and please report it)",
                EXIT_FAILED,
            )
        return None

    return wrapper  # type: ignore[return-value]


def _unwrapped(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``command``; one error out of a task group is raised as itself.

    A failed task makes ``asyncio.TaskGroup`` raise an ``ExceptionGroup``; the user
    should read the error inside it, not "unexpected ExceptionGroup".
    """
    try:
        return command(*args, **kwargs)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from group


def click_exceptions() -> tuple[type[BaseException], ...]:
    import click

    return (click.exceptions.Exit, click.exceptions.Abort, click.ClickException)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
