"""Turn every failure into one JSON shape: ``{"error": {"type", "message", "detail"?}}``.

This is the only place that maps the data layer's errors to HTTP status codes:

    WorkspaceNotFoundError / FileNotFoundInWorkspaceError / VersionNotFoundError   404
    PathConflictError (a file would also be a directory)                            409
    InvalidPathError / other InvalidFileError / InvalidWorkspaceError               400
    FileTooLargeError                                                               413
    BinaryContentError                                                              415
    InvalidRunRequestError (incl. UnknownLibrarySetError) / LimitsExceededError     400
    SandboxBusyError (admission: no capacity, with Retry-After)                     429
    SandboxUnavailableError                                                         503
    UnknownRemoteError (git export: no such remote for this tenant)                 400
    ExportRejectedError (git export: the branch moved on meanwhile)                 409
    GitRemoteError (the remote refused or is unreachable)                           502
    GitUnavailableError (no git on the server)                                      503
    GitTimeoutError                                                                 504
    SandboxStartError / other SandboxError / WorkspaceError                         500
    RequestValidationError (malformed JSON, wrong field)                            422
    anything else                                                                   500, no stack trace
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.errors import (
    InvalidRunRequestError,
    LimitsExceededError,
    SandboxBusyError,
    SandboxError,
    SandboxStartError,
    SandboxUnavailableError,
    UnknownLibrarySetError,
)
from workspace.errors import (
    BinaryContentError,
    ExportRejectedError,
    FileNotFoundInWorkspaceError,
    FileTooLargeError,
    GitRemoteError,
    GitTimeoutError,
    GitUnavailableError,
    InvalidFileError,
    InvalidPathError,
    InvalidWorkspaceError,
    PathConflictError,
    UnknownRemoteError,
    VersionNotFoundError,
    WorkspaceError,
    WorkspaceNotFoundError,
)

__all__ = ["error_body", "error_response", "install_error_handlers", "status_for"]

logger = logging.getLogger(__name__)

# Most specific first: the first isinstance match wins.
_MAPPING: tuple[tuple[type[Exception], int, str], ...] = (
    (WorkspaceNotFoundError, 404, "workspace_not_found"),
    (FileNotFoundInWorkspaceError, 404, "file_not_found"),
    (VersionNotFoundError, 404, "version_not_found"),
    (PathConflictError, 409, "path_conflict"),
    (InvalidPathError, 400, "invalid_path"),
    (FileTooLargeError, 413, "file_too_large"),
    (BinaryContentError, 415, "binary_content"),
    (InvalidFileError, 400, "invalid_file"),
    (InvalidWorkspaceError, 400, "invalid_workspace"),
    (UnknownRemoteError, 400, "unknown_remote"),
    (ExportRejectedError, 409, "export_rejected"),
    (GitRemoteError, 502, "git_remote_error"),
    (GitUnavailableError, 503, "git_unavailable"),
    (GitTimeoutError, 504, "git_timeout"),
    (UnknownLibrarySetError, 400, "unknown_library_set"),
    (InvalidRunRequestError, 400, "invalid_run_request"),
    (LimitsExceededError, 400, "limits_exceeded"),
    (SandboxBusyError, 429, "sandbox_busy"),
    (SandboxUnavailableError, 503, "sandbox_unavailable"),
    (SandboxStartError, 500, "sandbox_start_failed"),
    (SandboxError, 500, "sandbox_error"),
    (WorkspaceError, 500, "workspace_error"),
)


def status_for(exc: Exception) -> tuple[int, str]:
    """Return the HTTP status and error type of a data-layer error (500 for unknown ones)."""
    for cls, status, kind in _MAPPING:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"


def error_body(kind: str, message: str, detail: Any = None) -> dict[str, Any]:
    """Build the JSON error envelope (also used inside SSE ``error`` events)."""
    error: dict[str, Any] = {"type": kind, "message": message}
    if detail is not None:
        error["detail"] = detail
    return {"error": error}


def error_response(
    status: int, kind: str, message: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Build a JSON error response."""
    return JSONResponse(
        jsonable_encoder(error_body(kind, message, detail)), status_code=status, headers=headers
    )


def _kind_for_status(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI turns a JSON body that is not UTF-8 into a bare 400; it is binary content.
        message = "request body is not UTF-8 text; binary content is refused"
        return error_response(415, "binary_content", message)
    detail = exc.detail
    if isinstance(detail, dict) and "type" in detail and "message" in detail:
        return error_response(
            exc.status_code,
            str(detail["type"]),
            str(detail["message"]),
            detail.get("detail"),
            headers=exc.headers,
        )
    message = detail if isinstance(detail, str) else _kind_for_status(exc.status_code).replace("_", " ")
    return error_response(exc.status_code, _kind_for_status(exc.status_code), message, headers=exc.headers)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            pos = err.get("loc", ("body", 0))[-1]
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            return error_response(
                422,
                "malformed_json",
                f"request body is not valid JSON at character {pos}: {reason}",
                {"position": pos},
            )
    fields = [
        {
            "field": _field_name(err.get("loc", ())),
            "location": str(err.get("loc", ("body",))[0]),
            "message": str(err.get("msg", "invalid")),
        }
        for err in errors
    ]
    first = fields[0] if fields else {"field": "body", "message": "invalid request"}
    message = f"invalid field '{first['field']}': {first['message']}"
    return error_response(422, "validation_error", message, fields)


async def _handle_data_layer(request: Request, exc: Exception) -> JSONResponse:
    status, kind = status_for(exc)
    if status >= 500:
        logger.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, SandboxBusyError) else None
    return error_response(status, kind, str(exc) or kind.replace("_", " "), headers=headers)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the JSON envelope."""
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(WorkspaceError, _handle_data_layer)
    app.add_exception_handler(SandboxError, _handle_data_layer)
    app.add_exception_handler(Exception, _handle_unexpected)
