"""Reading the planner's YAML and JSON files, with one-line errors.

Every file the planner reads (a profile, the GPU catalog, a workload) goes through
:func:`load_model`, so a malformed file always fails the same way: a
:class:`~talkface.errors.ConfigError` whose one line names the file, the field and what
is wrong with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from talkface.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as ``field.path: message`` (+ how many more)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"


def parse_text(text: str, source: str) -> Any:
    """Parse JSON or YAML text (chosen by ``source``'s suffix; YAML accepts JSON too).

    Raises:
        ConfigError: the text is not valid JSON/YAML; the message has the line number.
    """
    if source.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML: {problem}{where}") from None


def validate_data(model: type[ModelT], data: Any, source: str) -> ModelT:
    """Validate parsed data against ``model``; one-line :class:`ConfigError` when it fails."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def load_model(model: type[ModelT], path: str | Path) -> ModelT:
    """Read, parse and validate one file.

    Raises:
        ConfigError: the file is missing, unreadable, malformed or fails validation.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    return validate_data(model, parse_text(text, str(path)), str(path))
