"""Lazy backend registries: a stage maps a backend name to ``"module:Class"``.

A backend module is imported only when that backend is selected, so the core imports
without any model package. A backend whose package is missing fails with the
``pip install`` line that fixes it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from talkface.errors import BackendUnavailable, ConfigError


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """Where a backend lives and which extra installs what it needs.

    Attributes:
        target: ``"package.module:ClassName"``.
        extra: the ``talkface[...]`` extra that installs its dependencies.
        summary: one line for ``talkface doctor`` and ``--help`` texts.
    """

    target: str
    extra: str
    summary: str


def load_backend_class(stage: str, table: dict[str, BackendEntry], name: str) -> type:
    """Import and return the class registered under ``name`` for ``stage``.

    Raises:
        ConfigError: ``name`` is not registered.
        BackendUnavailable: the backend's module could not be imported.
    """
    try:
        entry = table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise ConfigError(f"unknown {stage} backend {name!r}; choose one of: {known}") from None
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the {stage} backend {name!r} needs a package that is not installed "
            f"({exc.name or exc}); run: pip install 'talkface[{entry.extra}]'"
        ) from exc
    return getattr(module, class_name)
