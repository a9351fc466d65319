"""Credentials never reach a log: API keys and session tokens are masked in every record.

uvicorn logs each request's path with its query string (``GET /?token=...``, ``"WebSocket
/v1/sessions/ws?token=..." [accepted]``), and any logger may be handed a URL or a header.
:class:`RedactCredentials` masks, in a record's message and arguments:

* the values of the query parameters ``token``, ``key``, ``api_key`` (and ``*_token``,
  ``*_key``, such as ``access_token``);
* ``Authorization`` values and ``Bearer`` credentials;
* talkface's own key and token shapes (``tfk_...``, ``tft1.<payload>.<signature>``),
  wherever they appear.

:func:`install_log_redaction` applies it to every record made in the process, whichever
logger makes it and whichever handlers (uvicorn's, a log file's, pytest's) write it: a
filter on a logger sees only that logger's own records, and one on a handler only what
that handler writes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

MASK = "[redacted]"
_PATTERNS = (
    # ?token=..., &api_key=..., access_token=... (URLs, query strings, form bodies)
    re.compile(r"(?i)(?<![\w-])((?:[\w-]*[_-])?(?:token|key)=)[^&\s\"'#;,]+"),
    # Authorization: Bearer xyz / 'authorization': 'Basic xyz' (headers, dicts of them)
    # (not "Bearer <API key>", the placeholder in talkface's own help texts)
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?+(?!<)"
               r"[^\s\"',;]+"),
    re.compile(r"(?i)(\bbearer\s+)[\w.~+/=-]+"),
    # talkface's own shapes, even without a name before them
    re.compile(r"()\btfk_[\w-]{8,}"),
    re.compile(r"()\btft1\.[\w-]+\.[\w-]+"),
)
_install_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by :data:`MASK`."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return text


def _redacted_arg(value: Any) -> Any:
    if isinstance(value, (int, float, bytes)) or value is None:
        return value
    try:
        text = value if isinstance(value, str) else str(value)  # a URL object, an exception
    except Exception:
        return value  # the handler will fail to format it the same way, and say so
    masked = redact(text)
    return value if masked == text else masked  # keep the type unless something was hidden


class RedactCredentials(logging.Filter):
    """Masks credentials in a record's message and arguments; never drops a record.

    The arguments keep their places (uvicorn's access formatter unpacks them by
    position); only an argument that held a credential becomes a masked string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message and arguments in place; the record is always kept."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _redacted_arg(arg) for name, arg in record.args.items()}
        return True


def install_log_redaction() -> None:
    """Mask credentials in every log record made in this process from now on (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        make_record: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        redaction = RedactCredentials()

        def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            redaction.filter(record)
            return record

        logging.setLogRecordFactory(redacted_record)
        _installed = True
