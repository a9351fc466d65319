"""talkface: real-time talking digital humans.

The public API: a :class:`Runtime` holds the loaded engines, a :class:`Session` is one
conversation that borrows them, and typed messages flow between the stages.
"""

from talkface.config import Settings, load_settings
from talkface.errors import (
    BackendError,
    BackendUnavailable,
    BadInput,
    ConfigError,
    Overloaded,
    PayloadTooLarge,
    TalkfaceError,
)
from talkface.messages import (
    AudioChunk,
    Emotion,
    EndOfTurn,
    Error,
    Interrupt,
    Message,
    Sentence,
    SpeechAudio,
    TextDelta,
    Transcript,
    VideoFrame,
)
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "BackendError",
    "BackendUnavailable",
    "BadInput",
    "ConfigError",
    "Emotion",
    "EndOfTurn",
    "Error",
    "Interrupt",
    "Message",
    "Overloaded",
    "PayloadTooLarge",
    "Runtime",
    "Sentence",
    "Session",
    "SessionOptions",
    "Settings",
    "SpeechAudio",
    "TalkfaceError",
    "TextDelta",
    "Transcript",
    "VideoFrame",
    "__version__",
    "load_settings",
]
