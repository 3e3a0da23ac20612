"""The ``nmt-serve`` web application (FastAPI): routes, error answers, the body-size limit and the static page.

Endpoints: ``POST /translate``, ``POST /align``, ``POST /explore`` (the explorer page's data), ``GET /health``,
``GET /`` (the attention explorer page, files under ``/static``), and FastAPI's ``/docs`` and ``/openapi.json``.

Every error is JSON ``{"error": "..."}`` naming what was wrong: 400 for a body that is not JSON, 413 for a body or
request over a limit, 415 for a body sent as another media type, 422 for wrong types, unknown fields or values out
of range, 404/405 for unknown paths and methods, 500 (logged with its traceback) for a bug. No endpoint takes a
file name or path; static files come from the package's own directory.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from nmt import __version__
from nmt.errors import NMTError
from nmt.serve.schemas import (
    AlignRequest,
    AlignResponse,
    ErrorResponse,
    ExploreRequest,
    TranslateRequest,
    TranslateResponse,
)
from nmt.serve.service import RequestError, Service

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in (
        (400, "not JSON"),
        (413, "over a size limit"),
        (415, "not sent as application/json"),
        (422, "invalid fields or options"),
    )
}


def create_app(service: Service) -> FastAPI:
    """The application around a :class:`Service` (started and stopped with the app's lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="nmt-serve",
        version=__version__,
        description="Translation, forced word alignment and an attention explorer for one nmt checkpoint.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_body_bytes)
    _error_handlers(app)

    @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True, responses=ERRORS)
    async def translate(req: TranslateRequest) -> dict[str, Any]:
        """Translate sentences; requests arriving together are batched together."""
        return await service.translate(req)

    @app.post("/align", response_model=AlignResponse, responses=ERRORS)
    async def align(req: AlignRequest) -> dict[str, Any]:
        """Word-align given sentence pairs by forced decoding (as nmt-align)."""
        return await service.align(req)

    @app.post("/explore", responses=ERRORS)
    async def explore(req: ExploreRequest) -> dict[str, Any]:
        """One sentence's translation with the cross-attention of every layer and head (the explorer's data)."""
        return await service.explore(req)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The model, the limits and batching counters."""
        return service.health()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# --------------------------------------------------------------------------------------------- errors
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _field(loc: tuple) -> str:
    """('body', 'sentences', 2) -> 'sentences[2]'."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
        if first.get("type") == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            return _error(400, f"the request body is not valid JSON: {reason} (at character {first['loc'][-1]})")
        if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            return _error(400, "the request needs a JSON body (Content-Type: application/json)")
        kind = request.headers.get("content-type", "")
        if kind and "json" not in kind.split(";")[0] and tuple(first.get("loc", ())) == ("body",):
            return _error(415, f"send the body as JSON with Content-Type: application/json (not {kind.split(';')[0]})")
        message = "; ".join(f"{_field(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors[:5])
        if len(errors) > 5:
            message += f"; and {len(errors) - 5} more"
        return _error(422, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__  # FastAPI's 400 for a body it could not read says no more than that
        if isinstance(cause, UnicodeDecodeError):
            return _error(400, f"the request body is not valid UTF-8 (byte {cause.start}); send JSON in UTF-8")
        if isinstance(cause, RecursionError):
            return _error(400, "the request body is JSON nested too deeply to parse")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(NMTError)
    async def user_error(request: Request, exc: NMTError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the service goes on")


# --------------------------------------------------------------------------------------------- body size
class BodyTooLarge(HTTPException):
    """Raised while the body is read (FastAPI re-raises HTTPExceptions from body reading as they are)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes (--max-body-bytes)")


class BodyLimit:
    """ASGI middleware: refuse a body over ``max_bytes`` by its Content-Length, or while a chunked one streams in."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            bad = not length.isdigit()
            message = "invalid Content-Length" if bad else str(BodyTooLarge(self.max_bytes).detail)
            await _error(400 if bad else 413, message)(scope, receive, send)
            return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
