"""Pages Stripe hosts for the customer: Checkout to buy a plan, the portal to manage billing."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import Settings
from services import accounts, catalog, customers, purchases, subscriptions
from services.errors import InvalidInput
from services.stripe.client import StripeApi

# Stripe refuses longer URLs; refusing them here gives the caller the field's name.
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def check_url(value: str, field: str) -> None:
    """INVALID_INPUT unless `value` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
    if (
        host is None
        or parts.scheme not in ("http", "https")
        or len(value) > MAX_URL_LENGTH
        or any(char.isspace() or not char.isprintable() for char in value)
    ):
        raise InvalidInput(f"`{field}` must be an absolute http or https URL", [field])


@dataclass(frozen=True)
class CheckoutOrder:
    """What createCheckoutSession asks for."""

    plan_id: int
    success_url: str
    cancel_url: str
    promotion_code: str | None = None
    allow_promotion_codes: bool = False
    currency: str | None = None


async def create_checkout_session(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    settings: Settings,
    account_id: int,
    order: CheckoutOrder,
) -> CheckoutSession:
    """A Checkout page where the customer subscribes to the plan (the webhook mirrors it)."""
    check_url(order.success_url, "successUrl")
    check_url(order.cancel_url, "cancelUrl")
    plan = await catalog.plan_for_sale(session=session, plan_id=order.plan_id)
    # Checkout would start a second subscription; the same rule as createSubscription.
    await subscriptions.refuse_second_subscription(session=session, account_id=account_id)
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    terms = await purchases.terms_for(
        session=session,
        stripe=stripe,
        settings=settings,
        account=await accounts.load_account(session, account_id),
        plan=plan,
        currency=order.currency,
        promotion_code=order.promotion_code,
    )
    created = await stripe.create_checkout_session(
        customer_id=customer_id,
        price_id=plan.stripe_price_id,
        success_url=order.success_url,
        cancel_url=order.cancel_url,
        trial_days=plan.trial_days,
        terms=terms,
        allow_promotion_codes=order.allow_promotion_codes,
        idempotency_key=subscriptions.stripe_key("checkout-session", account_id, None),
    )
    assert created.url is not None, "subscription Checkout sessions are hosted pages"
    return CheckoutSession(id=created.id, url=created.url)


async def create_portal_session(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, return_url: str
) -> str:
    """The URL of a customer portal session, where the customer manages cards and plans."""
    check_url(return_url, "returnUrl")
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    created = await stripe.create_portal_session(
        customer_id=customer_id,
        return_url=return_url,
        idempotency_key=subscriptions.stripe_key("portal-session", account_id, None),
    )
    return created.url
