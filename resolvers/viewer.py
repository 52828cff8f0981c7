"""`Query.viewer`: the signed-in caller's own billing; every field is scoped to their account."""

import asyncio
from datetime import UTC, datetime

import strawberry

from db.models import Account, InvoiceStatus, SubscriptionStatus
from resolvers.connections import connection_of, connection_with_relations, query_error
from resolvers.credits import CreditAccount
from schema.access import BillingAccess
from schema.billing import Customer, Invoice, PaymentMethod, PaymentTransaction, Subscription
from schema.commerce import Discount, PromotionCodeCheck
from schema.common import Connection
from schema.ids import row_id_of
from schema.notifications import Notification, NotificationPreferences
from schema.purchases import InvoicePreview
from schema.scalars import BigInt
from services import (
    access,
    catalog,
    credits,
    invoices,
    notifications,
    payment_methods,
    payments,
    previews,
    purchases,
    subscriptions,
)
from services.errors import DomainError


async def _access(info: strawberry.Info, account_id: int) -> access.Access:
    return await access.current_access(
        info.context.database,
        account_id=account_id,
        grace_days=info.context.settings.billing_grace_days,
        now=datetime.now(UTC),
    )


@strawberry.type
class Viewer:
    user_id: str
    account: strawberry.Private[Account]
    # Read once for `access` and `activeSubscription`, which a dashboard asks together.
    access_read: strawberry.Private[asyncio.Future[access.Access] | None] = None

    def _access(self, info: strawberry.Info) -> asyncio.Future[access.Access]:
        if self.access_read is None:
            self.access_read = asyncio.ensure_future(_access(info, self.account.id))
        return self.access_read

    @strawberry.field
    def customer(self) -> Customer | None:
        return Customer.from_model(self.account)

    @strawberry.field
    async def access(self, info: strawberry.Info) -> BillingAccess:
        return BillingAccess.of(await self._access(info))

    @strawberry.field
    async def active_subscription(self, info: strawberry.Info) -> Subscription | None:
        """The subscription that gives access now: the same as `access.subscription`."""
        row = (await self._access(info)).subscription
        return Subscription.from_model(row) if row is not None else None

    @strawberry.field
    async def credits(self, info: strawberry.Info) -> CreditAccount:
        async with info.context.database.session() as session:
            balance = await credits.balance_of(session=session, account_id=self.account.id)
        return CreditAccount(balance=BigInt(balance), account_id=self.account.id)

    @strawberry.field
    async def subscriptions(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[SubscriptionStatus] | None = None,
    ) -> Connection[Subscription]:
        try:
            page = await subscriptions.list_for_account(
                database=info.context.database,
                account_id=self.account.id,
                statuses=status,
                first=first,
                after=after,
            )
        except DomainError as error:
            raise query_error(error) from error
        return await connection_with_relations(info, page, Subscription)

    @strawberry.field
    async def invoices(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[InvoiceStatus] | None = None,
    ) -> Connection[Invoice]:
        try:
            page = await invoices.list_for_account(
                database=info.context.database,
                account_id=self.account.id,
                statuses=status,
                first=first,
                after=after,
            )
        except DomainError as error:
            raise query_error(error) from error
        return await connection_with_relations(info, page, Invoice)

    @strawberry.field
    async def notifications(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Notification]:
        try:
            page = await notifications.list_notifications(
                info.context.database, account_id=self.account.id, first=first, after=after
            )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, Notification.from_model)

    @strawberry.field
    async def notification_preferences(self, info: strawberry.Info) -> NotificationPreferences:
        async with info.context.database.read_session() as session:
            preferences = await notifications.preferences_of(session, account_id=self.account.id)
        return NotificationPreferences.of(preferences)

    @strawberry.field
    async def payment_methods(self, info: strawberry.Info) -> list[PaymentMethod]:
        rows = await payment_methods.list_for_account(
            database=info.context.database, account_id=self.account.id
        )
        # At hand for the default card and payments' cards, when asked after.
        loader = info.context.loaders.payment_method_by_stripe_id
        for row in rows:
            loader.prime(row.stripe_payment_method_id, row)
        default = self.account.default_payment_method_stripe_id
        return [
            PaymentMethod.from_model(row, is_default=row.stripe_payment_method_id == default)
            for row in rows
        ]

    @strawberry.field
    async def transactions(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[PaymentTransaction]:
        try:
            page = await payments.list_for_account(
                database=info.context.database, account_id=self.account.id, first=first, after=after
            )
        except DomainError as error:
            raise query_error(error) from error
        return await connection_with_relations(info, page, PaymentTransaction)

    @strawberry.field(
        description="What subscribing to a plan, or changing the subscription to it, would bill "
        "(nothing changes)."
    )
    async def invoice_preview(
        self,
        info: strawberry.Info,
        plan_id: strawberry.ID,
        subscription_id: strawberry.ID | None = None,
        quantity: int | None = None,
        promotion_code: str | None = None,
        currency: str | None = None,
    ) -> InvoicePreview:
        try:
            async with info.context.database.session() as session:
                found = await previews.preview_purchase(
                    session=session,
                    stripe=info.context.stripe,
                    settings=info.context.settings,
                    account_id=self.account.id,
                    plan_id=row_id_of(plan_id, "Plan", field="planId"),
                    subscription_id=(
                        row_id_of(subscription_id, "Subscription", field="subscriptionId")
                        if subscription_id is not None
                        else None
                    ),
                    quantity=quantity,
                    promotion_code=promotion_code,
                    currency=currency,
                )
        except DomainError as error:
            raise query_error(error) from error
        return InvoicePreview.of(found)

    @strawberry.field(
        description="Whether a promotion code can be used now, for a plan when given."
    )
    async def promotion_code(
        self, info: strawberry.Info, code: str, plan_id: strawberry.ID | None = None
    ) -> PromotionCodeCheck:
        try:
            async with info.context.database.session() as session:
                plan = None
                if plan_id is not None:
                    row_id = row_id_of(plan_id, "Plan", field="planId")
                    plan = await catalog.plan_for_sale(session=session, plan_id=row_id)
                check = await purchases.check_code(
                    session=session,
                    stripe=info.context.stripe,
                    account=self.account,
                    code=code,
                    plan=plan,
                    currency=None,
                )
        except DomainError as error:
            raise query_error(error) from error
        return PromotionCodeCheck(
            valid=check.valid,
            discount=Discount.of(check.discount) if check.discount else None,
            reason=check.reason,
        )
