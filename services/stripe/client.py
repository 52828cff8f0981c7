"""The gateway's one door to Stripe: every call the services make, async, with an
idempotency key on every write, and Stripe's failures translated to domain errors.

The same code talks to Stripe (STRIPE_API_KEY) or to the offline sandbox (its URL as
the API base), so tests exercise exactly what production runs."""

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import stripe

from gateway.settings import SANDBOX_API_KEY, SANDBOX_STRIPE_JS_PATH, Settings
from services.admission import give_up_place
from services.errors import DomainError, ErrorCode
from services.observability import STRIPE_CALLS, STRIPE_DURATION
from services.stripe.errors import translated_errors

T = TypeVar("T")

TIMEOUT_SECONDS = 20
NETWORK_RETRIES = 2
# What a subscription create or change needs back to mirror it and to answer the caller.
SUBSCRIPTION_EXPAND = ["latest_invoice.confirmation_secret", "latest_invoice.payments"]
# What describing a discount needs (services/discounts.py): its coupon and promotion code.
DISCOUNT_EXPAND = ["discounts.source.coupon", "discounts.promotion_code"]


@dataclass(frozen=True)
class Terms:
    """How a purchase is billed beyond its price: the currency, a promotion code, the tax."""

    currency: str | None = None
    promotion_code_id: str | None = None
    automatic_tax: bool = False
    tax_rate_ids: tuple[str, ...] = ()

    def subscription_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.currency:
            params["currency"] = self.currency
        if self.promotion_code_id:
            params["discounts"] = [{"promotion_code": self.promotion_code_id}]
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        if self.tax_rate_ids:
            params["default_tax_rates"] = list(self.tax_rate_ids)
        return params


# Where calls go when there is neither a key nor a sandbox: nowhere (the discard port), so
# the sandbox's key is never sent to real Stripe and calls fail as STRIPE_UNAVAILABLE.
NOWHERE = "http://127.0.0.1:9"
STRIPE_JS_URL = "https://js.stripe.com/v3/"


class StripeApi:
    def __init__(self, settings: Settings, api_base: str | None) -> None:
        key = settings.stripe_api_key
        if key is None and api_base is None:
            api_base = NOWHERE
        # aiohttp, not the SDK's default httpx: a call costs a third of the CPU (an expanded
        # invoice read: 0.95 ms against 2.7 ms), and the webhook worker reads Stripe often.
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        self._client = stripe.StripeClient(
            key.get_secret_value() if key is not None else SANDBOX_API_KEY,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=NETWORK_RETRIES,
        )
        self.v1 = self._client.v1
        self.api_base = api_base  # None: Stripe itself
        self.stripe_js_url = (
            STRIPE_JS_URL if key is not None else f"{api_base}{SANDBOX_STRIPE_JS_PATH}"
        )

    async def close(self) -> None:
        """Close its connections; the client is not used after."""
        await self._http.close_async()

    async def __aenter__(self) -> "StripeApi":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def call(self, operation: str, request: Awaitable[T]) -> T:
        give_up_place()
        started, outcome = time.perf_counter(), "error"
        try:
            with translated_errors(operation):
                result = await request
            outcome = "ok"
            return result
        finally:
            STRIPE_CALLS.labels(operation, outcome).inc()
            STRIPE_DURATION.labels(operation).observe(time.perf_counter() - started)

    def _write(self, idempotency_key: str) -> Any:
        return {"idempotency_key": idempotency_key}

    # --- customers and payment methods ---------------------------------------------

    async def create_customer(
        self, *, user_id: str, email: str | None, name: str | None, idempotency_key: str
    ) -> stripe.Customer:
        params: Any = {"metadata": {"user_id": user_id}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        request = self.v1.customers.create_async(params, self._write(idempotency_key))
        return await self.call("customers.create", request)

    async def retrieve_customer(self, customer_id: str) -> stripe.Customer:
        return await self.call("customers.retrieve", self.v1.customers.retrieve_async(customer_id))

    async def delete_customer(self, *, customer_id: str, idempotency_key: str) -> None:
        """Delete the customer (Stripe cancels its subscriptions at once); one already
        deleted counts as done."""
        request = self.v1.customers.delete_async(customer_id, options=self._write(idempotency_key))
        try:
            await self.call("customers.delete", request)
        except DomainError as error:
            if error.code is not ErrorCode.NOT_FOUND:
                raise

    async def update_billing_details(
        self, *, customer_id: str, details: dict[str, Any], idempotency_key: str
    ) -> stripe.Customer:
        """Set the customer's name, email and address (given keys only)."""
        request = self.v1.customers.update_async(
            customer_id,
            details,
            self._write(idempotency_key),  # type: ignore[arg-type]
        )
        return await self.call("customers.update", request)

    async def create_tax_id(
        self, *, customer_id: str, type: str, value: str, idempotency_key: str
    ) -> stripe.TaxId:
        params: Any = {"type": type, "value": value}
        request = self.v1.customers.tax_ids.create_async(
            customer_id, params, self._write(idempotency_key)
        )
        return await self.call("customers.tax_ids.create", request)

    async def delete_tax_id(self, *, customer_id: str, tax_id: str) -> None:
        request = self.v1.customers.tax_ids.delete_async(customer_id, tax_id)
        await self.call("customers.tax_ids.delete", request)

    async def retrieve_tax_rate(self, tax_rate_id: str) -> stripe.TaxRate:
        return await self.call("tax_rates.retrieve", self.v1.tax_rates.retrieve_async(tax_rate_id))

    async def find_promotion_code(self, code: str) -> dict[str, Any] | None:
        """The promotion code customers type as `code` (its coupon expanded), None when Stripe
        has none. Codes are case-insensitive on Stripe; an active one wins over inactive ones."""
        params: Any = {
            "code": code,
            "limit": 10,
            "expand": ["data.promotion.coupon.applies_to"],
        }
        page = await self.call("promotion_codes.list", self.v1.promotion_codes.list_async(params))
        found = sorted((code.to_dict() for code in page.data), key=lambda c: not c["active"])
        return found[0] if found else None

    async def set_default_payment_method(
        self, *, customer_id: str, payment_method_id: str | None, idempotency_key: str
    ) -> stripe.Customer:
        params: Any = {"invoice_settings": {"default_payment_method": payment_method_id or ""}}
        request = self.v1.customers.update_async(customer_id, params, self._write(idempotency_key))
        return await self.call("customers.update", request)

    async def attach_payment_method(
        self, *, payment_method_id: str, customer_id: str, idempotency_key: str
    ) -> stripe.PaymentMethod:
        request = self.v1.payment_methods.attach_async(
            payment_method_id, {"customer": customer_id}, self._write(idempotency_key)
        )
        return await self.call("payment_methods.attach", request)

    async def detach_payment_method(
        self, *, payment_method_id: str, idempotency_key: str
    ) -> stripe.PaymentMethod:
        request = self.v1.payment_methods.detach_async(
            payment_method_id, None, self._write(idempotency_key)
        )
        return await self.call("payment_methods.detach", request)

    async def retrieve_payment_method(self, payment_method_id: str) -> stripe.PaymentMethod:
        request = self.v1.payment_methods.retrieve_async(payment_method_id)
        return await self.call("payment_methods.retrieve", request)

    async def list_payment_methods(self, customer_id: str) -> list[stripe.PaymentMethod]:
        """The payment methods attached to a customer."""
        found: list[stripe.PaymentMethod] = []
        params: Any = {"limit": 100}
        while True:
            request = self.v1.customers.payment_methods.list_async(customer_id, params)
            page = await self.call("customers.payment_methods.list", request)
            found.extend(page.data)
            if not page.has_more:
                return found
            params = params | {"starting_after": page.data[-1].id}

    async def create_setup_intent(
        self, *, customer_id: str, idempotency_key: str
    ) -> stripe.SetupIntent:
        params: Any = {"customer": customer_id, "usage": "off_session"}
        request = self.v1.setup_intents.create_async(params, self._write(idempotency_key))
        return await self.call("setup_intents.create", request)

    # --- catalog ----------------------------------------------------------------------

    async def list_prices(self, *, product_id: str | None = None) -> list[stripe.Price]:
        """Every price (of one product, if given), with its product and currencies expanded."""
        prices: list[stripe.Price] = []
        params: Any = {"limit": 100, "expand": ["data.product", "data.currency_options"]}
        if product_id is not None:
            params["product"] = product_id
        while True:
            page = await self.call("prices.list", self.v1.prices.list_async(params))
            prices.extend(page.data)
            if not page.has_more:
                return prices
            params = params | {"starting_after": page.data[-1].id}

    async def retrieve_price(self, price_id: str) -> stripe.Price:
        """One price, with its product and currencies expanded."""
        request = self.v1.prices.retrieve_async(
            price_id, {"expand": ["product", "currency_options"]}
        )
        return await self.call("prices.retrieve", request)

    # --- subscriptions ------------------------------------------------------------------

    async def create_subscription(
        self,
        *,
        customer_id: str,
        price_id: str,
        quantity: int,
        payment_method_id: str | None,
        trial_days: int | None,
        idempotency_key: str,
        terms: Terms = Terms(),
    ) -> stripe.Subscription:
        params: Any = {
            "customer": customer_id,
            "items": [{"price": price_id, "quantity": quantity}],
            "expand": SUBSCRIPTION_EXPAND,
            "payment_settings": {"save_default_payment_method": "on_subscription"},
        } | terms.subscription_params()
        if payment_method_id:
            params |= {
                "default_payment_method": payment_method_id,
                "payment_behavior": "allow_incomplete",
            }
        else:
            # No card yet: Stripe.js collects and confirms it with the returned client secret.
            params["payment_behavior"] = "default_incomplete"
        if trial_days:
            params["trial_period_days"] = trial_days
        request = self.v1.subscriptions.create_async(params, self._write(idempotency_key))
        return await self.call("subscriptions.create", request)

    async def retrieve_subscription(
        self, subscription_id: str, *, expand: list[str] = SUBSCRIPTION_EXPAND
    ) -> stripe.Subscription:
        request = self.v1.subscriptions.retrieve_async(subscription_id, {"expand": expand})
        return await self.call("subscriptions.retrieve", request)

    async def list_subscriptions(self, customer_id: str) -> list[stripe.Subscription]:
        """Every subscription of a customer, ended ones too, expanded like a retrieve."""
        found: list[stripe.Subscription] = []
        expand = [f"data.{path}" for path in SUBSCRIPTION_EXPAND]
        params: Any = {"customer": customer_id, "status": "all", "limit": 100, "expand": expand}
        while True:
            page = await self.call("subscriptions.list", self.v1.subscriptions.list_async(params))
            found.extend(page.data)
            if not page.has_more:
                return found
            params = params | {"starting_after": page.data[-1].id}

    async def change_subscription_price(
        self,
        *,
        subscription_id: str,
        item_id: str,
        price_id: str,
        quantity: int,
        prorate: bool,
        idempotency_key: str,
        promotion_code_id: str | None = None,
    ) -> stripe.Subscription:
        params: Any = Terms(promotion_code_id=promotion_code_id).subscription_params() | {
            "items": [{"id": item_id, "price": price_id, "quantity": quantity}],
            "proration_behavior": "always_invoice" if prorate else "none",
            # A change whose invoice cannot be paid now is not made at all (Stripe answers 402),
            # so nobody gets a bigger plan on an unpaid invoice.
            "payment_behavior": "error_if_incomplete",
            "expand": SUBSCRIPTION_EXPAND,
        }
        request = self.v1.subscriptions.update_async(
            subscription_id, params, self._write(idempotency_key)
        )
        return await self.call("subscriptions.update", request)

    async def apply_promotion_code(
        self, *, subscription_id: str, promotion_code_id: str, idempotency_key: str
    ) -> stripe.Subscription:
        params: Any = Terms(promotion_code_id=promotion_code_id).subscription_params()
        request = self.v1.subscriptions.update_async(
            subscription_id, params | {"expand": SUBSCRIPTION_EXPAND}, self._write(idempotency_key)
        )
        return await self.call("subscriptions.update", request)

    async def set_cancel_at_period_end(
        self, *, subscription_id: str, cancel: bool, idempotency_key: str
    ) -> stripe.Subscription:
        params: Any = {"cancel_at_period_end": cancel, "expand": SUBSCRIPTION_EXPAND}
        request = self.v1.subscriptions.update_async(
            subscription_id, params, self._write(idempotency_key)
        )
        return await self.call("subscriptions.update", request)

    async def cancel_subscription(
        self, *, subscription_id: str, idempotency_key: str
    ) -> stripe.Subscription:
        params: Any = {"expand": SUBSCRIPTION_EXPAND}
        request = self.v1.subscriptions.cancel_async(
            subscription_id, params, self._write(idempotency_key)
        )
        return await self.call("subscriptions.cancel", request)

    # --- invoices and payments ----------------------------------------------------------

    async def retrieve_invoice(
        self, invoice_id: str, *, expand: list[str] | None = None
    ) -> stripe.Invoice:
        params: Any = {"expand": expand or ["payments", "confirmation_secret"]}
        request = self.v1.invoices.retrieve_async(invoice_id, params)
        return await self.call("invoices.retrieve", request)

    async def preview_invoice(self, params: dict[str, Any]) -> stripe.Invoice:
        """What Stripe would bill for a new subscription or a change (nothing is changed)."""
        request = self.v1.invoices.create_preview_async(
            params | {"expand": DISCOUNT_EXPAND}  # type: ignore[arg-type]
        )
        return await self.call("invoices.create_preview", request)

    async def pay_invoice(
        self,
        *,
        invoice_id: str,
        payment_method_id: str | None,
        idempotency_key: str,
        off_session: bool = True,
    ) -> stripe.Invoice:
        """Charge an open invoice now; `off_session=False` when the customer is present, so a
        card that asks for 3-D Secure is challenged instead of declined."""
        params: Any = {"expand": ["payments", "confirmation_secret"], "off_session": off_session}
        if payment_method_id:
            params["payment_method"] = payment_method_id
        request = self.v1.invoices.pay_async(invoice_id, params, self._write(idempotency_key))
        return await self.call("invoices.pay", request)

    async def create_payment(
        self,
        *,
        customer_id: str,
        amount: int,
        currency: str,
        description: str | None,
        payment_method_id: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> stripe.PaymentIntent:
        params: Any = {
            "amount": amount,
            "currency": currency,
            "customer": customer_id,
            "metadata": metadata,
            # Cards only: no redirect methods, so no return_url. (This API version has no
            # `payment_method_types` parameter any more.)
            "allowed_payment_method_types": ["card"],
            "expand": ["latest_charge"],
        }
        if description:
            params["description"] = description
        if payment_method_id:
            params |= {"payment_method": payment_method_id, "confirm": True}
        request = self.v1.payment_intents.create_async(params, self._write(idempotency_key))
        return await self.call("payment_intents.create", request)

    async def retrieve_payment(self, payment_intent_id: str) -> stripe.PaymentIntent:
        request = self.v1.payment_intents.retrieve_async(
            payment_intent_id, {"expand": ["latest_charge"]}
        )
        return await self.call("payment_intents.retrieve", request)

    async def refund(
        self,
        *,
        payment_intent_id: str,
        amount: int | None,
        reason: str | None,
        idempotency_key: str,
    ) -> stripe.Refund:
        params: Any = {"payment_intent": payment_intent_id}
        if amount is not None:
            params["amount"] = amount
        if reason:
            params["metadata"] = {"reason": reason}
        request = self.v1.refunds.create_async(params, self._write(idempotency_key))
        return await self.call("refunds.create", request)

    async def list_refunds(self, payment_intent_id: str) -> list[stripe.Refund]:
        """Every refund of a payment."""
        found: list[stripe.Refund] = []
        params: Any = {"payment_intent": payment_intent_id, "limit": 100}
        while True:
            page = await self.call("refunds.list", self.v1.refunds.list_async(params))
            found.extend(page.data)
            if not page.has_more:
                return found
            params = params | {"starting_after": page.data[-1].id}

    async def list_disputes(self, payment_intent_id: str) -> list[stripe.Dispute]:
        """Every dispute of a payment (a charge is disputed at most once)."""
        params: Any = {"payment_intent": payment_intent_id, "limit": 100}
        page = await self.call("disputes.list", self.v1.disputes.list_async(params))
        return list(page.data)

    # --- hosted pages -------------------------------------------------------------------

    async def create_checkout_session(
        self,
        *,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        trial_days: int | None,
        idempotency_key: str,
        terms: Terms = Terms(),
        allow_promotion_codes: bool = False,
    ) -> stripe.checkout.Session:
        params: Any = {
            "mode": "subscription",
            "customer": customer_id,
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        subscription_data: dict[str, Any] = {}
        if trial_days:
            subscription_data["trial_period_days"] = trial_days
        if terms.tax_rate_ids:
            subscription_data["default_tax_rates"] = list(terms.tax_rate_ids)
        if subscription_data:
            params["subscription_data"] = subscription_data
        if terms.currency:
            params["currency"] = terms.currency
        if terms.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        if terms.promotion_code_id:
            params["discounts"] = [{"promotion_code": terms.promotion_code_id}]
        elif allow_promotion_codes:
            params["allow_promotion_codes"] = True
        request = self.v1.checkout.sessions.create_async(params, self._write(idempotency_key))
        return await self.call("checkout.sessions.create", request)

    async def create_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str
    ) -> stripe.billing_portal.Session:
        params: Any = {"customer": customer_id, "return_url": return_url}
        request = self.v1.billing_portal.sessions.create_async(params, self._write(idempotency_key))
        return await self.call("billing_portal.sessions.create", request)

    # --- events -----------------------------------------------------------------------

    async def list_events(self, *, created_gte: int | None = None) -> list[dict[str, Any]]:
        """Every event Stripe still keeps (created at or after `created_gte`), newest first, as
        the JSON Stripe sent (the inbox stores payloads exactly as a webhook delivers them)."""
        found: list[dict[str, Any]] = []
        params: Any = {"limit": 100}
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        while True:
            page = await self.call("events.list", self.v1.events.list_async(params))
            raw: Any = page.last_response.data if page.last_response else page.to_dict()
            found.extend(raw["data"])
            if not page.has_more:
                return found
            params = params | {"starting_after": page.data[-1].id}
