"""The offline Stripe: a stateful HTTP server speaking Stripe's v1 API (app.py), its resources,
webhook deliveries and clocks, run by `serve` without a key (demo.py) or on its own."""
