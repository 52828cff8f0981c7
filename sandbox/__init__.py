"""The offline Stripe server: not built yet (issue 3); until then there is no sandbox to call."""
