"""Request bodies, read safely: a size cap on every body, strict multipart forms, uploads.

* :class:`LimitedBodyRoute` caps every request body of a router at the server's
  ``limits.max_upload_bytes`` (plus room for form fields): a declared ``Content-Length``
  over it is refused with 413 before anything is read, and a body that streams past it
  is cut off with 413, so an oversize upload never sits in memory or on disk whole.
* :func:`read_form` parses a multipart form only after the caller is authenticated, and
  validates its fields with a pydantic model from :mod:`talkface.api.schemas`, so an
  unknown or malformed field is a 400 that names it, as it is for JSON bodies.
* :func:`save_upload` copies an uploaded file to disk in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from talkface.errors import BadInput, PayloadTooLarge

ModelT = TypeVar("ModelT", bound=BaseModel)

FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the non-file fields and multipart boundaries on top of the file itself."""
_MAX_FORM_FIELDS = 32
_MAX_FIELD_BYTES = 64 * 1024


def _upload_limit_bytes(request: Request) -> int:
    return request.app.state.talkface.settings.server.limits.max_upload_bytes


def _too_large(limit_bytes: int, size_bytes: int | None = None) -> PayloadTooLarge:
    size = f"{size_bytes / 2**20:.1f} MiB" if size_bytes is not None else "more than that"
    return PayloadTooLarge(
        f"the request body is {size}; this server accepts at most "
        f"{limit_bytes / 2**20:.1f} MiB per upload (limits.max_upload_bytes): "
        "send a smaller or shorter file"
    )


class LimitedBodyRoute(APIRoute):
    """A route whose request body may not exceed the server's upload limit."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, refusing a body over the route's upload limit before reading it."""
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            limit = _upload_limit_bytes(request) + FORM_OVERHEAD_BYTES
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit - FORM_OVERHEAD_BYTES, int(declared))
            return await handler(Request(request.scope, _capped(request.receive, limit)))

        return limited


def _capped(receive: Receive, limit_bytes: int) -> Receive:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit_bytes:
                # FastAPI turns anything but an HTTPException raised while it reads a
                # body into a 400; this keeps the 413 (and its message) intact.
                raise HTTPException(413, str(_too_large(limit_bytes - FORM_OVERHEAD_BYTES)))
        return message

    return capped


def validate_body(model: type[ModelT], data: Any) -> ModelT:
    """``model`` validated from ``data``; a bad field is a 400 that names it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


async def read_json(request: Request, model: type[ModelT]) -> ModelT:
    """The request's JSON body validated as ``model`` (read after authentication).

    Raises:
        BadInput: not JSON.
        RequestValidationError: a field is unknown or has a bad value (a 400 naming it).
    """
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith("application/json"):
        raise BadInput(f"send the body as JSON (Content-Type: application/json), "
                       f"not {content_type or 'without a content type'}")
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadInput(f"the body is not valid JSON ({exc})") from None
    return validate_body(model, data)


@contextlib.asynccontextmanager
async def read_form(
    request: Request, model: type[ModelT], *, file_field: str = "file",
    file_required: bool = True,
) -> AsyncIterator[tuple[ModelT, UploadFile | None]]:
    """Parse the request's multipart form; the upload's temporary file is removed on exit.

    Args:
        request: the request (its body must not have been read yet).
        model: the fields other than the file, strict (unknown fields are refused).
        file_field: the name of the file field.
        file_required: whether a request without a file is refused.

    Yields:
        The validated fields and the uploaded file.

    Raises:
        BadInput: not a multipart form, malformed, or the file is missing or repeated.
        PayloadTooLarge: the file is larger than ``limits.max_upload_bytes``.
        RequestValidationError: a field is unknown or has a bad value (a 400 naming it).
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadInput(
            f"send this request as multipart/form-data with the file in a {file_field!r} "
            f"field (got content type {content_type or 'none'!r})"
        )
    try:
        form = await request.form(
            max_files=2, max_fields=_MAX_FORM_FIELDS, max_part_size=_MAX_FIELD_BYTES
        )
    except HTTPException as exc:
        if exc.status_code == 413:
            raise PayloadTooLarge(str(exc.detail)) from None
        raise BadInput(f"malformed multipart form: {exc.detail}") from None
    try:
        files = [v for v in form.getlist(file_field) if isinstance(v, UploadFile)]
        others = [k for k, v in form.multi_items() if isinstance(v, UploadFile) and k != file_field]
        if others:
            raise BadInput(f"unexpected file field {others[0]!r}; send the file as {file_field!r}")
        if len(files) > 1:
            raise BadInput(f"send one file in {file_field!r}, not {len(files)}")
        if not files and file_required:
            raise BadInput(f"no file: send it in the multipart field {file_field!r}")
        upload = files[0] if files else None
        limit = _upload_limit_bytes(request)
        if upload is not None and upload.size is not None and upload.size > limit:
            raise _too_large(limit, upload.size)
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == file_field:
                continue
            if isinstance(value, UploadFile):
                continue
            name = key.removesuffix("[]")
            if key.endswith("[]"):
                fields.setdefault(name, []).append(value)
            else:
                fields[name] = value
        yield validate_body(model, fields), upload
    finally:
        await form.close()


async def save_upload(upload: UploadFile, path: Path) -> int:
    """Copy ``upload`` to ``path`` (in a worker thread); returns the bytes written."""

    def copy() -> int:
        upload.file.seek(0)
        with path.open("wb") as sink:
            shutil.copyfileobj(upload.file, sink, 1024 * 1024)
            return sink.tell()

    return await asyncio.to_thread(copy)


def upload_suffix(upload: UploadFile, default: str = ".bin") -> str:
    """A safe file-name suffix from the upload's own name (".wav"), for FFmpeg's probing."""
    suffix = Path(upload.filename or "").suffix.lower()
    if 1 < len(suffix) <= 8 and suffix[1:].isalnum():
        return suffix
    return default
