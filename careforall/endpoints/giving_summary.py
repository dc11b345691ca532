"""GET /account/giving/<year>.csv: a signed-in donor's donations paid in a
year, for their tax return (`Authorization: Bearer <token>`). UTF-8 with a
byte order mark, and no cell can start a formula, as the admins' export."""

from __future__ import annotations

import csv
import io
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from careforall.concurrency import in_thread
from careforall.domain.errors import DomainError
from careforall.domain.money import major_units
from careforall.runtime import Runtime
from careforall.services.auth import authenticate, bearer_token
from careforall.services.giving_summary import YearSummary, yearly_summary

COLUMNS = (
    "receipt",
    "paid_at",
    "campaign",
    "amount",
    "currency",
    "recurring",
)
BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HTTP_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403}


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={**headers, "Cache-Control": "no-store"},
    )


def _summary(runtime: Runtime, token: str, year: int) -> YearSummary:
    principal = authenticate(runtime.db, runtime.keys, token)
    with runtime.db.read() as session:
        return yearly_summary(session, principal=principal, year=year)


def to_csv(summary: YearSummary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for line in summary.lines:
        writer.writerow(
            [
                line.pledge_id,
                line.paid_at.isoformat(),
                _cell(line.campaign_title),
                str(major_units(line.amount_cents, line.currency)),
                line.currency,
                "yes" if line.recurring else "no",
            ]
        )
    for total in summary.totals:
        amount = str(major_units(total.amount_cents, total.currency))
        writer.writerow(["total", str(summary.year), "", amount, total.currency, ""])
    return BOM + out.getvalue()


async def download_giving_summary(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return _error(401, "Send your token as 'Authorization: Bearer <token>'.")
    text = str(request.path_params["year"])
    if not text.isdigit():
        return _error(400, "The year must be a number, e.g. 2026.")
    try:
        summary = await in_thread(partial(_summary, runtime, token, int(text)))
    except DomainError as exc:
        return _error(HTTP_STATUS.get(exc.code, 400), exc.message)
    return Response(
        to_csv(summary),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": (
                f'attachment; filename="careforall-giving-{summary.year}.csv"'
            ),
            "Cache-Control": "no-store",
        },
    )
