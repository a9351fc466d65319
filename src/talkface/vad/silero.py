"""Silero VAD v6 through onnxruntime, without torch.

The ONNX file comes from the ``silero-vad`` package (installed with ``--no-deps``: only
its data file is used). At 16 kHz the model reads 512-sample (32 ms) windows, each
preceded by the last 64 samples of the window before it, and carries a ``(2, 1, 128)``
recurrent state from window to window; both live in the per-session
:class:`SileroStream`, so one loaded model serves every session.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Self

import numpy as np

from talkface.errors import BackendUnavailable
from talkface.vad.base import VAD_SAMPLE_RATE_HZ, VADBackend, VADSettings, VADStream

_CONTEXT_SAMPLES = 64
_STATE_SHAPE = (2, 1, 128)
_MODEL_FILE = "silero_vad.onnx"


def silero_model_path() -> Path | None:
    """Path of the packaged ``silero_vad.onnx``, or None when silero-vad is not installed."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], "data", _MODEL_FILE)
    return path if path.is_file() else None


class SileroStream(VADStream):
    """One session's silero state: the recurrent state and the 64-sample context."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._sample_rate = np.array(VAD_SAMPLE_RATE_HZ, dtype=np.int64)
        self._input = np.zeros((1, _CONTEXT_SAMPLES + self.window_samples), dtype=np.float32)
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)

    def reset(self) -> None:
        """Zero the recurrent state and the context window (a new conversation)."""
        self._input[:] = 0.0
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)

    def speech_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """Speech probability of each 512-sample window, carrying the state across them."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(
                f"silero needs windows of shape (n, {self.window_samples}), got {windows.shape}"
            )
        probabilities = np.empty(len(windows), dtype=np.float32)
        buffer = self._input
        for index, window in enumerate(windows):
            # The model sees [64 samples of context | the 512 new samples].
            buffer[0, _CONTEXT_SAMPLES:] = window
            output, self._state = self._session.run(
                None, {"input": buffer, "state": self._state, "sr": self._sample_rate}
            )
            probabilities[index] = output[0, 0]
            buffer[0, :_CONTEXT_SAMPLES] = window[-_CONTEXT_SAMPLES:]
        return probabilities


class SileroVAD(VADBackend):
    """The silero-vad ONNX model on the CPU (~0.25 ms per 32 ms window)."""

    name = "silero"

    def __init__(self, settings: VADSettings, session: Any) -> None:
        super().__init__(settings)
        self._session = session

    @classmethod
    def load(cls, settings: VADSettings) -> Self:
        """Load silero_vad.onnx into an onnxruntime CPU session (``num_threads`` threads)."""
        try:
            import onnxruntime
        except ImportError as exc:
            raise BackendUnavailable(
                "the silero VAD needs onnxruntime; run: pip install 'talkface[vad]'"
            ) from exc
        path = silero_model_path()
        if path is None:
            raise BackendUnavailable(
                "the silero VAD model is not installed; run: pip install --no-deps "
                "silero-vad==6.2.3 (see requirements/no-deps.txt)"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.num_threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        backend = cls(settings, session)
        backend.new_stream().speech_probabilities(np.zeros((1, 512), dtype=np.float32))
        return backend

    def new_stream(self) -> SileroStream:
        """A fresh stream, with its own state, over the shared ONNX session."""
        return SileroStream(self._session)
