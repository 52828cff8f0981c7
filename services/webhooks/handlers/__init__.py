"""One module per Stripe event family; importing the package registers every handler."""

from services.webhooks.handlers import (  # noqa: F401 - registers them
    catalog,
    checkout,
    customers,
    disputes,
    invoices,
    payment_methods,
    payments,
    setup_intents,
    subscriptions,
)
