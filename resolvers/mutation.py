"""The Mutation root: each family of mutations lives in its own module under mutations/."""

from strawberry.tools import merge_types

from resolvers.mutations.commerce import CommerceMutations
from resolvers.mutations.credits import CreditMutations
from resolvers.mutations.notifications import NotificationMutations
from resolvers.mutations.payments import PaymentMutations
from resolvers.mutations.privacy import PrivacyMutations
from resolvers.mutations.subscriptions import SubscriptionMutations
from resolvers.mutations.webhooks import WebhookMutations

Mutation = merge_types(
    "Mutation",
    (
        SubscriptionMutations,
        PaymentMutations,
        CreditMutations,
        WebhookMutations,
        CommerceMutations,
        NotificationMutations,
        PrivacyMutations,
    ),
)
