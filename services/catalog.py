"""The plans for sale: Stripe's prices mirrored into `plans`, with credits from metadata."""

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Plan, PriceKind
from services import mirror
from services.errors import InvalidInput, NotFound
from services.stripe.client import StripeApi


async def list_plans(*, session: AsyncSession) -> Sequence[Plan]:
    """Active recurring prices, cheapest first."""
    query = (
        select(Plan)
        .where(Plan.active, Plan.kind == PriceKind.RECURRING)
        .order_by(Plan.amount, Plan.product_name, Plan.id)
    )
    return (await session.scalars(query)).all()


async def get_plan(*, session: AsyncSession, plan_id: int) -> Plan | None:
    return await session.get(Plan, plan_id)


async def plan_for_sale(*, session: AsyncSession, plan_id: int) -> Plan:
    """A plan one may subscribe to: NOT_FOUND when unknown, INVALID_INPUT when not for sale."""
    async with session.begin():
        plan = await session.get(Plan, plan_id)
    if plan is None:
        raise NotFound("No such plan", ["planId"])
    if not plan.active or plan.kind is not PriceKind.RECURRING:
        raise InvalidInput("That plan is not for sale", ["planId"])
    return plan


async def sync_plans(*, session: AsyncSession, stripe: StripeApi) -> int:
    """Mirror every Stripe price (with its product) into plans; the number of prices seen."""
    prices = await stripe.list_prices()
    observed_at = datetime.now(UTC)
    async with session.begin():
        for price in prices:
            data = price.to_dict()
            await mirror.upsert_plan(session, data, data["product"], observed_at=observed_at)
    return len(prices)


async def plan_for_price(*, session: AsyncSession, stripe: StripeApi, price_id: str) -> Plan:
    """The plan of a Stripe price, mirrored from Stripe first if it is not known yet."""
    async with session.begin():
        plan = await mirror.plan_for_price(session, price_id)
    if plan is None:
        await sync_plans(session=session, stripe=stripe)
        async with session.begin():
            plan = await mirror.plan_for_price(session, price_id)
    assert plan is not None, f"Stripe lists price {price_id}"
    return plan
