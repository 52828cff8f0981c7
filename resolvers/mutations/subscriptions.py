"""Subscription and hosted-page mutations: thin: decode, authorize, call a service, map."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.billing import Subscription
from schema.ids import row_id_of
from schema.subscription_mutations import (
    CancelSubscriptionInput,
    CancelSubscriptionPayload,
    ChangeSubscriptionPlanInput,
    ChangeSubscriptionPlanPayload,
    CreateCheckoutSessionInput,
    CreateCheckoutSessionPayload,
    CreatePortalSessionInput,
    CreatePortalSessionPayload,
    CreateSubscriptionInput,
    CreateSubscriptionPayload,
    ResumeSubscriptionInput,
    ResumeSubscriptionPayload,
)
from services import hosted_pages, subscriptions


def _subscription_id(global_id: str) -> int:
    return row_id_of(global_id, "Subscription", field="subscriptionId")


def _plan_id(global_id: str) -> int:
    return row_id_of(global_id, "Plan", field="planId")


@strawberry.type
class SubscriptionMutations:
    @strawberry.mutation
    async def create_subscription(
        self, info: strawberry.Info, input: CreateSubscriptionInput
    ) -> CreateSubscriptionPayload:
        async def create(caller: Caller) -> CreateSubscriptionPayload:
            order = subscriptions.Order(
                plan_id=_plan_id(input.plan_id),
                payment_method_id=input.payment_method_id,
                quantity=input.quantity,
                idempotency_key=input.idempotency_key,
                promotion_code=input.promotion_code,
                currency=input.currency,
            )
            started = await subscriptions.create(
                database=info.context.database,
                stripe=info.context.stripe,
                settings=info.context.settings,
                account_id=caller.account.id,
                order=order,
                actor=caller.audit_actor,
            )
            return CreateSubscriptionPayload(
                subscription=Subscription.from_model(started.subscription),
                client_secret=started.client_secret,
                requires_action=started.requires_action,
            )

        return await run_mutation(info, CreateSubscriptionPayload, input, create)

    @strawberry.mutation
    async def change_subscription_plan(
        self, info: strawberry.Info, input: ChangeSubscriptionPlanInput
    ) -> ChangeSubscriptionPlanPayload:
        async def change(caller: Caller) -> ChangeSubscriptionPlanPayload:
            plan_change = subscriptions.PlanChange(
                subscription_id=_subscription_id(input.subscription_id),
                plan_id=_plan_id(input.plan_id),
                quantity=input.quantity,
                prorate=input.prorate is not False,
                idempotency_key=input.idempotency_key,
                promotion_code=input.promotion_code,
            )
            row = await subscriptions.change_plan(
                database=info.context.database,
                stripe=info.context.stripe,
                account_id=caller.account.id,
                change=plan_change,
                actor=caller.audit_actor,
            )
            return ChangeSubscriptionPlanPayload(subscription=Subscription.from_model(row))

        return await run_mutation(info, ChangeSubscriptionPlanPayload, input, change)

    @strawberry.mutation
    async def cancel_subscription(
        self, info: strawberry.Info, input: CancelSubscriptionInput
    ) -> CancelSubscriptionPayload:
        async def cancel(caller: Caller) -> CancelSubscriptionPayload:
            subscription_id = _subscription_id(input.subscription_id)
            async with info.context.database.session() as session:
                row = await subscriptions.cancel(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    subscription_id=subscription_id,
                    at_period_end=input.at_period_end is not False,
                    actor=caller.audit_actor,
                )
            return CancelSubscriptionPayload(subscription=Subscription.from_model(row))

        return await run_mutation(info, CancelSubscriptionPayload, input, cancel)

    @strawberry.mutation
    async def resume_subscription(
        self, info: strawberry.Info, input: ResumeSubscriptionInput
    ) -> ResumeSubscriptionPayload:
        async def resume(caller: Caller) -> ResumeSubscriptionPayload:
            subscription_id = _subscription_id(input.subscription_id)
            async with info.context.database.session() as session:
                row = await subscriptions.resume(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    subscription_id=subscription_id,
                    actor=caller.audit_actor,
                )
            return ResumeSubscriptionPayload(subscription=Subscription.from_model(row))

        return await run_mutation(info, ResumeSubscriptionPayload, input, resume)

    @strawberry.mutation
    async def create_checkout_session(
        self, info: strawberry.Info, input: CreateCheckoutSessionInput
    ) -> CreateCheckoutSessionPayload:
        async def create(caller: Caller) -> CreateCheckoutSessionPayload:
            order = hosted_pages.CheckoutOrder(
                plan_id=_plan_id(input.plan_id),
                success_url=input.success_url,
                cancel_url=input.cancel_url,
                promotion_code=input.promotion_code,
                allow_promotion_codes=input.allow_promotion_codes is True,
                currency=input.currency,
            )
            async with info.context.database.session() as session:
                checkout = await hosted_pages.create_checkout_session(
                    session=session,
                    stripe=info.context.stripe,
                    settings=info.context.settings,
                    account_id=caller.account.id,
                    order=order,
                )
            return CreateCheckoutSessionPayload(session_id=checkout.id, url=checkout.url)

        return await run_mutation(info, CreateCheckoutSessionPayload, input, create)

    @strawberry.mutation
    async def create_portal_session(
        self, info: strawberry.Info, input: CreatePortalSessionInput
    ) -> CreatePortalSessionPayload:
        async def create(caller: Caller) -> CreatePortalSessionPayload:
            async with info.context.database.session() as session:
                url = await hosted_pages.create_portal_session(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    return_url=input.return_url,
                )
            return CreatePortalSessionPayload(url=url)

        return await run_mutation(info, CreatePortalSessionPayload, input, create)
