"""The admin's billing metrics (computed by services/metrics.py)."""

import strawberry

from schema.common import Money
from services import metrics


def _money_list(amounts: metrics.Amounts) -> list[Money]:
    return [Money.of(amount, currency) for currency, amount in sorted(amounts.items())]


@strawberry.type
class BillingMetrics:
    mrr: list[Money] = strawberry.field(
        description="Monthly recurring revenue, one entry per currency."
    )
    arr: list[Money]
    active_subscriptions: int
    trialing_subscriptions: int
    past_due_subscriptions: int
    churn_rate_30d: float = strawberry.field(
        name="churnRate30d",
        description="Share of subscriptions active 30 days ago that have since ended, 0..1.",
    )
    payment_success_rate_30d: float = strawberry.field(
        name="paymentSuccessRate30d",
        description="Succeeded payment attempts over all attempts in the last 30 days, 0..1.",
    )
    revenue_30d: list[Money] = strawberry.field(name="revenue30d")

    @classmethod
    def from_model(cls, row: metrics.BillingMetrics) -> "BillingMetrics":
        return cls(
            mrr=_money_list(row.mrr),
            arr=_money_list(row.arr),
            active_subscriptions=row.active_subscriptions,
            trialing_subscriptions=row.trialing_subscriptions,
            past_due_subscriptions=row.past_due_subscriptions,
            churn_rate_30d=row.churn_rate_30d,
            payment_success_rate_30d=row.payment_success_rate_30d,
            revenue_30d=_money_list(row.revenue_30d),
        )
