"""Stripe webhooks: the inbox (stored before acknowledged), the workers that claim events,
and the handlers that apply each event to the mirror."""
