"""Structured logs: every record is one line of JSON on standard error.

Fields: ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, then whatever the call
passed in ``extra`` (the request log adds ``request_id``, ``method``, ``route``, ``status``,
``duration_ms`` and ``enterprise``), and ``exc`` with the traceback when there is one.

Nothing secret is meant to reach a log: the request log names routes by their template
(``/api/v1/batteries/{code}``), never the path, query or body, and never a header. As a last
line of defence the formatter also masks anything shaped like an API key (``bt_<id>_<secret>``),
a bearer credential or a note signing key before the line is written.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: Shapes of secrets that must never be written: API keys, bearer credentials, note signing keys.
SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"bt_[0-9a-f]{12}_[A-Za-z0-9_-]{20,100}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"PRIVATE\+KEY\+[^\s\"']+"),
)
REDACTED = "[redacted]"

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)))
    | {"message", "asctime", "taskName", "color_message"}
)

#: Loggers whose own handlers are replaced by the root's JSON handler.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def redact(text: str) -> str:
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def _plain(value: Any) -> Any:
    """A value that ``json.dumps`` can write: JSON types as they are, anything else as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON. ``redact=False`` is for tests that look for leaks."""

    def __init__(self, *, redact: bool = True) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format string
            message = f"{record.msg!s} {record.args!r}"
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in body:
                body[key] = _plain(value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(body, ensure_ascii=False, allow_nan=False, default=str)
        return redact(line) if self.redact else line


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: JSON lines on standard error for the registry and
    the web server. uvicorn applies it in every worker process (``uvicorn.run(log_config=...)``).
    The server's access log is off: the registry writes its own line per request."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "batterytrace.logging_json.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": level} for name in _SERVER_LOGGERS},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (standard error) as JSON lines; returns the handler.

    Replaces the root logger's handlers and the web server's own, so that no line is written in
    another format. Call once when a server process starts, not from library code."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        for old in list(server_logger.handlers):
            server_logger.removeHandler(old)
        server_logger.propagate = name != "uvicorn.access"
        server_logger.disabled = False
        server_logger.setLevel(logging.NOTSET)  # the root's level decides, whatever a server set before
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler
