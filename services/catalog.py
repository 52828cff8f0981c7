"""The plans for sale, read from the mirror of Stripe's prices."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Plan, PriceKind


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
