"""GET /account/data: a signed-in person downloads everything held about them
(JSON, `Authorization: Bearer <token>`); the gathering is a service's."""

from __future__ import annotations

import json
import logging
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from careforall.concurrency import in_thread
from careforall.domain.errors import DomainError
from careforall.domain.rules import Principal
from careforall.runtime import Runtime
from careforall.services.auth import authenticate, bearer_token
from careforall.services.personal_data import personal_data

log = logging.getLogger("careforall.personal_data")

FILENAME = "careforall-my-data.json"
HTTP_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403}


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={**(headers or {}), "Cache-Control": "no-store"},
    )


def _gather(runtime: Runtime, token: str) -> dict[str, object]:
    principal: Principal = authenticate(runtime.db, runtime.keys, token)
    with runtime.db.read() as session:
        return personal_data(session, principal=principal)


async def download_personal_data(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return _error(401, "Send your token as 'Authorization: Bearer <token>'.")
    try:
        data = await in_thread(partial(_gather, runtime, token))
    except DomainError as exc:
        return _error(HTTP_STATUS.get(exc.code, 400), exc.message)
    log.info("personal data downloaded")
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{FILENAME}"',
            "Cache-Control": "no-store",
        },
    )
