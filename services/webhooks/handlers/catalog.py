"""product.* and price.*: the plans for sale."""

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Plan
from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, lock, obj


@dispatch.handles("price.created", "price.updated", "price.deleted")
async def price_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Re-read the price with its product (a plan needs both; a price event names only the
    product), or retire a deleted price."""
    price = obj(event)
    await lock(session, price["id"])
    if event["type"] == "price.deleted":
        await _retire(session, Plan.stripe_price_id == price["id"])
        return
    await sync.mirror_price(session, stripe, price["id"], sync.fresh_time(event))


@dispatch.handles("product.created", "product.updated", "product.deleted")
async def product_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Re-read the product's prices (its name and active flag live on each plan)."""
    product = obj(event)
    await lock(session, product["id"])
    if event["type"] == "product.deleted":
        await _retire(session, Plan.stripe_product_id == product["id"])
        return
    observed_at = sync.fresh_time(event)
    for price in await stripe.list_prices(product_id=product["id"]):
        data = price.to_dict()
        await mirror.upsert_plan(session, data, data["product"], observed_at=observed_at)


async def _retire(session: AsyncSession, which: object) -> None:
    """Take deleted prices off sale; the rows stay, subscriptions still point at them."""
    await session.execute(update(Plan).where(which).values(active=False))  # type: ignore[arg-type]
