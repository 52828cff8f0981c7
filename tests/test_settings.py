"""Settings come from the environment; production refuses unsafe ones and names the variable."""

import pytest

from gateway.settings import (
    DEVELOPMENT_JWT_SECRET,
    SANDBOX_WEBHOOK_SECRET,
    ConfigurationError,
    Environment,
    Settings,
)

PRODUCTION = {
    "BILLING_ENV": "production",
    "DATABASE_URL": "postgresql://billing:pw@db.internal/billing",
    "JWT_SECRET": "a-production-secret-that-is-long-enough-123",
    "STRIPE_API_KEY": "sk_live_123",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_123",
    "STRIPE_WEBHOOK_SECRETS": "whsec_live_a, whsec_live_b",
    "DATA_ENCRYPTION_KEYS": "2026-12:" + "A" * 43 + "=",
}


@pytest.fixture
def environment(monkeypatch):
    def apply(values: dict[str, str]) -> None:
        for name in list(PRODUCTION) + ["JWT_PUBLIC_KEY"]:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


def test_development_runs_on_defaults(environment):
    environment({})
    settings = Settings()
    assert settings.billing_env is Environment.DEVELOPMENT
    assert settings.database_url is None
    assert settings.jwt_signing_secret == DEVELOPMENT_JWT_SECRET
    assert settings.uses_sandbox and settings.webhook_secrets == [SANDBOX_WEBHOOK_SECRET]


def test_production_starts_with_real_secrets(environment):
    environment(PRODUCTION)
    settings = Settings()
    assert settings.is_production and not settings.uses_sandbox
    assert settings.webhook_secrets == ["whsec_live_a", "whsec_live_b"]
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"JWT_SECRET": None}, "JWT_SECRET"),
        ({"JWT_SECRET": DEVELOPMENT_JWT_SECRET}, "JWT_SECRET"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"STRIPE_API_KEY": None}, "STRIPE_API_KEY"),
        ({"STRIPE_PUBLISHABLE_KEY": None}, "STRIPE_PUBLISHABLE_KEY"),
        ({"STRIPE_WEBHOOK_SECRETS": None}, "STRIPE_WEBHOOK_SECRETS"),
        ({"STRIPE_WEBHOOK_SECRETS": SANDBOX_WEBHOOK_SECRET}, "STRIPE_WEBHOOK_SECRETS"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"DATA_ENCRYPTION_KEYS": None}, "DATA_ENCRYPTION_KEYS"),
    ],
)
def test_production_refuses_a_missing_or_default_secret(environment, change, variable):
    values = {k: v for k, v in (PRODUCTION | change).items() if v is not None}
    environment(values)
    with pytest.raises(ConfigurationError, match=variable):
        Settings()


def test_a_secret_and_a_public_key_together_are_ambiguous(environment):
    environment({"JWT_SECRET": "x" * 40, "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----"})
    with pytest.raises(ConfigurationError, match="JWT_SECRET or JWT_PUBLIC_KEY"):
        Settings()


@pytest.mark.parametrize(
    "variable", ["WEBHOOK_TOLERANCE_SECONDS", "WEBHOOK_MAX_ATTEMPTS", "WEBHOOK_WORKER_CONCURRENCY"]
)
def test_webhook_counts_below_one_are_refused(environment, variable):
    environment({variable: "0"})
    with pytest.raises(ConfigurationError, match=variable):
        Settings()


def test_credit_and_grace_settings_are_read_and_checked(environment, monkeypatch):
    environment({"BILLING_GRACE_DAYS": "3", "CREDITS_PER_CURRENCY_UNIT": "25"})
    settings = Settings()
    assert (settings.billing_grace_days, settings.credits_per_currency_unit) == (3, 25)

    for variable in ("BILLING_GRACE_DAYS", "CREDITS_PER_CURRENCY_UNIT"):
        monkeypatch.setenv(variable, "-1")
        with pytest.raises(ConfigurationError, match=variable):
            Settings()
        monkeypatch.setenv(variable, "1")


def test_the_live_queue_size_is_read_and_checked(environment, monkeypatch):
    environment({"LIVE_QUEUE_SIZE": "8"})
    assert Settings().live_queue_size == 8

    monkeypatch.setenv("LIVE_QUEUE_SIZE", "0")
    with pytest.raises(ConfigurationError, match="LIVE_QUEUE_SIZE"):
        Settings()
