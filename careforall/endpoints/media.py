"""Campaign images over HTTP: `POST /campaigns/{id}/image` (the organiser's or
an admin's bearer token; a multipart form with the file in the field `image`,
or the file itself as the body) and `GET /media/<name>`, the stored files,
cached for good since a name says what it holds."""

from __future__ import annotations

import logging
from functools import partial

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from careforall.concurrency import in_thread
from careforall.domain.errors import (
    BadUserInput,
    DomainError,
    RateLimited,
    Unauthenticated,
)
from careforall.domain.rules import Principal
from careforall.media import NAME
from careforall.runtime import Runtime
from careforall.services.auth import authenticate, bearer_token
from careforall.services.images import (
    CoverImage,
    check_may_set_image,
    image_srcset,
    image_url,
    prepare_image,
    set_campaign_image,
    too_large,
)
from careforall.services.ratelimit import Limiter
from careforall.settings import Settings

log = logging.getLogger("careforall.images")

# The upload path, for the body size limit (`app.py`) to allow images through.
UPLOAD_PATH = r"/campaigns/[^/]+/image"
HTTP_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404}
# The multipart form's own bytes around the file (boundaries, part headers).
FORM_OVERHEAD = 64 * 1024
FOREVER = "public, max-age=31536000, immutable"


def upload_limit(image_max_bytes: int) -> int:
    """The largest request body the upload path accepts."""
    return image_max_bytes + FORM_OVERHEAD


def _error(exc: DomainError, status: int | None = None) -> JSONResponse:
    status = status or HTTP_STATUS.get(exc.code, 400)
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": exc.message, "code": exc.code}, status_code=status, headers=headers
    )


def _may_set(runtime: Runtime, token: str, campaign_id: str) -> Principal:
    principal = authenticate(runtime.db, runtime.keys, token)
    with runtime.db.read() as session:
        check_may_set_image(session, principal=principal, campaign_id=campaign_id)
    return principal


async def _file_bytes(request: Request, max_bytes: int) -> bytes:
    """The uploaded file: the form's `image` field, or the body itself."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await request.body()
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise BadUserInput("Send the image as the form field 'image'.")
        data = await upload.read(max_bytes + 1)
    return data


def _count_upload(request: Request, principal: Principal) -> None:
    """Refuse an organiser who uploads too often (decoding costs CPU)."""
    settings: Settings = request.app.state.runtime.settings
    if not settings.rate_limits:
        return
    limiter: Limiter = request.app.state.rate_limiter
    rate = settings.rate_limit_image_per_principal
    wait = limiter.hit([(f"image:principal:{principal.id}", rate)])
    if wait is not None:
        raise RateLimited(
            f"Too many image uploads; wait {wait} seconds and try again.",
            retry_after_seconds=wait,
        )


def _store(runtime: Runtime, image: CoverImage) -> None:
    for name, data in image.files.items():
        runtime.media.put(name, data)


async def upload_campaign_image(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    max_bytes = runtime.settings.image_max_bytes
    campaign_id = request.path_params["campaign_id"]
    token = bearer_token(request.headers.get("authorization"))
    try:
        if token is None:
            raise Unauthenticated("Send your token as 'Authorization: Bearer <token>'.")
        principal = await in_thread(partial(_may_set, runtime, token, campaign_id))
        _count_upload(request, principal)
        data = await _file_bytes(request, max_bytes)
        if len(data) > max_bytes:
            return _error(too_large(len(data), max_bytes), 413)
        image = await in_thread(partial(prepare_image, data, max_bytes=max_bytes))
        # Files first: the campaign never names an image that is not stored.
        await in_thread(partial(_store, runtime, image))
        await runtime.write(
            set_campaign_image,
            runtime.uow(),
            principal=principal,
            campaign_id=campaign_id,
            image_key=image.key,
        )
    except RateLimited as exc:
        response = _error(exc, 429)
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    except DomainError as exc:
        return _error(exc)
    log.info("campaign image set", extra={"campaign": campaign_id})
    return JSONResponse(
        {"imageUrl": image_url(image.key), "imageSrcset": image_srcset(image.key)},
        headers={"Cache-Control": "no-store"},
    )


async def media_file(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    name = request.path_params["name"]
    data = None
    if NAME.fullmatch(name):
        data = await in_thread(partial(runtime.media.get, name))
    if data is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    media_type = "image/webp" if name.endswith(".webp") else "image/jpeg"
    return Response(data, media_type=media_type, headers={"Cache-Control": FOREVER})
