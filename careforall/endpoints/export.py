"""GET /admin/export/donations.csv: donations for a spreadsheet, streamed.

Query parameters (all optional): `campaignId`, `status`, `from`, `to`. Dates
are ISO 8601; a time without a zone is UTC; `from` is inclusive and `to`
exclusive, except that a plain date as `to` (2026-01-31) includes that day.
The file is UTF-8 with a byte order mark, so spreadsheets read accents right,
and no cell can start a formula.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from careforall.domain.clock import to_utc
from careforall.domain.errors import DomainError
from careforall.domain.money import major_units
from careforall.domain.rules import require_admin
from careforall.domain.states import PledgeStatus
from careforall.runtime import Runtime
from careforall.services import export
from careforall.services.admin import PledgeFilter
from careforall.services.auth import authenticate, bearer_token

log = logging.getLogger("careforall.export")

COLUMNS = (
    "pledge_id",
    "created_at",
    "campaign_id",
    "campaign_title",
    "amount",
    "amount_cents",
    "currency",
    "status",
    "donor_name",
    "message",
)
BOM = "\ufeff"
# Spreadsheets run a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HTTP_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403}


class BadParameter(ValueError):
    """A query parameter that cannot be used; the message says which."""


def safe_cell(value: str) -> str:
    """Keep a cell from being read as a formula (OWASP's CSV injection advice)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _moment(raw: str | None, name: str, *, end: bool) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        if "T" not in raw and " " not in raw and len(raw) == 10:
            day = date.fromisoformat(raw)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(), tzinfo=UTC)
        return to_utc(datetime.fromisoformat(raw))
    except ValueError:
        raise BadParameter(
            f"'{name}' must be an ISO 8601 date or time, like 2026-01-31 or "
            "2026-01-31T18:00:00Z."
        ) from None


def _filter(request: Request) -> PledgeFilter:
    params = request.query_params
    status_raw = params.get("status") or None
    try:
        status = PledgeStatus(status_raw.upper()) if status_raw else None
    except ValueError:
        names = ", ".join(s.value for s in PledgeStatus)
        raise BadParameter(f"'status' must be one of {names}.") from None
    return PledgeFilter(
        campaign_id=params.get("campaignId") or None,
        status=status,
        created_from=_moment(params.get("from"), "from", end=False),
        created_to=_moment(params.get("to"), "to", end=True),
    )


def _csv(rows: list[tuple[str, ...]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: CRLF line ends, quotes as needed
    writer.writerows(tuple(safe_cell(cell) for cell in row) for row in rows)
    return buffer.getvalue().encode()


def _lines(chunks: Iterator[list[export.Donation]]) -> Iterator[bytes]:
    yield BOM.encode() + _csv([COLUMNS])
    for chunk in chunks:
        yield _csv(
            [
                (
                    d.pledge.id,
                    iso_utc(d.pledge.created_at),
                    d.pledge.campaign_id,
                    d.campaign_title,
                    str(major_units(d.pledge.amount_cents, d.pledge.currency)),
                    str(d.pledge.amount_cents),
                    d.pledge.currency,
                    d.pledge.status,
                    d.pledge.donor_name or "",
                    d.pledge.message or "",
                )
                for d in chunk
            ]
        )


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def export_donations(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return _error(401, "Send an admin's token as 'Authorization: Bearer <token>'.")
    try:
        # The role as it is now in the database, as for GraphQL, not the token's.
        principal = require_admin(authenticate(runtime.db, runtime.keys, token))
        flt = _filter(request)
        # Checks run here; the rows are read chunk by chunk while streaming.
        chunks = export.donations(runtime.db, principal=principal, filter=flt)
    except DomainError as exc:
        return _error(HTTP_STATUS.get(exc.code, 400), exc.message)
    except BadParameter as exc:
        return _error(400, str(exc))
    log.info("donations export started", extra={"admin": principal.id})
    return StreamingResponse(
        _lines(chunks),  # a plain iterator: Starlette reads it in a worker thread
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="donations.csv"',
            "Cache-Control": "no-store",
        },
    )
