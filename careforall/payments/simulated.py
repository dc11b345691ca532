"""The built-in simulated provider.

It authorizes `pm_card_ok`, declines `pm_card_declined`, captures, refunds and
cancels an authorization,
and owes a signed webhook for each of those; the webhooks wait in
`sim_webhooks` (committed with the payment change) until `WebhookSender`
delivers them, so a crash loses none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from careforall import tracing
from careforall.db import Database
from careforall.domain.clock import new_id, utcnow
from careforall.models import SimPayment, SimWebhook
from careforall.payments.provider import ProviderResult, UnknownPaymentMethod

CARD_OK = "pm_card_ok"
CARD_DECLINED = "pm_card_declined"
DECLINE_REASON = "Your card was declined."
CANCEL_REASON = "The authorization was canceled before it was captured."


class SimulatedProvider:
    def __init__(
        self, db: Database, on_webhook: Callable[[], None] = lambda: None
    ) -> None:
        self._db = db
        self._on_webhook = on_webhook

    def _owe_webhook(
        self,
        session: Session,
        payment: SimPayment,
        kind: str,
        reason: str = DECLINE_REASON,
    ) -> None:
        event_id = f"evt_{os.urandom(12).hex()}"
        body = {
            "id": event_id,
            "type": f"payment.{kind}",
            "created": int(utcnow().timestamp()),
            "data": {
                "pledgeId": payment.pledge_id,
                "amountCents": payment.amount_cents,
                "currency": payment.currency,
                **({"reason": reason} if kind == "failed" else {}),
            },
        }
        session.add(
            SimWebhook(
                event_id=event_id,
                body=json.dumps(body),
                trace_context=tracing.traceparent(),
            )
        )

    def _payment(
        self, session: Session, pledge_id: str, *, for_update: bool = False
    ) -> SimPayment | None:
        query = select(SimPayment).where(SimPayment.pledge_id == pledge_id)
        if for_update:
            query = query.with_for_update()
        return session.exec(query).first()

    def authorize(
        self, *, pledge_id: str, amount_cents: int, currency: str, payment_method: str
    ) -> ProviderResult:
        if payment_method not in (CARD_OK, CARD_DECLINED):
            raise UnknownPaymentMethod(payment_method)
        with self._db.write_session() as session:
            payment = self._payment(session, pledge_id)
            if payment is None:
                approved = payment_method == CARD_OK
                payment = SimPayment(
                    id=new_id("pay"),
                    pledge_id=pledge_id,
                    amount_cents=amount_cents,
                    currency=currency,
                    method=payment_method,
                    status="authorized" if approved else "declined",
                )
                session.add(payment)
                self._owe_webhook(
                    session, payment, "authorized" if approved else "failed"
                )
                try:
                    session.commit()
                except IntegrityError:  # a concurrent call authorized it first
                    session.rollback()
                    payment = self._payment(session, pledge_id)
                    assert payment is not None
                else:
                    self._on_webhook()
        if payment.status == "declined":
            return ProviderResult(approved=False, reason=DECLINE_REASON)
        return ProviderResult(approved=True)

    def _move(
        self, pledge_id: str, allowed_from: str, to: str, event: str | None = None
    ) -> ProviderResult:
        with self._db.write_session() as session:
            payment = self._payment(session, pledge_id, for_update=True)
            if payment is None:
                return ProviderResult(
                    approved=False, reason="No payment was authorized."
                )
            if payment.status == to:
                return ProviderResult(approved=True)
            if payment.status != allowed_from:
                return ProviderResult(
                    approved=False, reason=f"The payment is {payment.status}."
                )
            payment.status = to
            session.add(payment)
            if event == "failed":
                self._owe_webhook(session, payment, "failed", CANCEL_REASON)
            else:
                self._owe_webhook(session, payment, event or to)
            session.commit()
        self._on_webhook()
        return ProviderResult(approved=True)

    def capture(self, *, pledge_id: str) -> ProviderResult:
        return self._move(pledge_id, "authorized", "captured")

    def refund(
        self,
        *,
        pledge_id: str,
        amount_cents: int | None = None,
        refunded_cents: int = 0,
    ) -> ProviderResult:
        if amount_cents is not None:
            return ProviderResult(
                approved=False,
                reason="The simulated provider refunds whole payments only.",
            )
        return self._move(pledge_id, "captured", "refunded")

    def cancel(self, *, pledge_id: str) -> ProviderResult:
        # The webhook says "failed", as a real provider's cancellation does.
        return self._move(pledge_id, "authorized", "canceled", event="failed")

    def save_payment_method(self, *, donor_id: str, payment_method: str) -> str:
        # The simulation's cards are their own tokens: nothing to keep.
        if payment_method not in (CARD_OK, CARD_DECLINED):
            raise UnknownPaymentMethod(payment_method)
        return payment_method

    def charge_saved(
        self,
        *,
        pledge_id: str,
        amount_cents: int,
        currency: str,
        token: str,
        donor_present: bool = False,
    ) -> ProviderResult:
        return self.authorize(
            pledge_id=pledge_id,
            amount_cents=amount_cents,
            currency=currency,
            payment_method=token,
        )
