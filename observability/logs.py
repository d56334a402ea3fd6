"""Log hygiene for both services: nothing sensitive in any log line.

Authlib logs issued tokens at DEBUG, nfcpy dumps APDUs (PINs) at DEBUG, and an HTTP access log would carry
secrets and personal data in paths: the one-use login handle, certificate serials in operator URLs, OCSP
requests (serials) in GET URLs, and every query string (state, nonce, codes). These loggers are capped or
redacted here, once, when an app is created.
"""

from __future__ import annotations

import logging
import re

_PATHS = (
    re.compile(r"(/api/login/)(?!submit\b)[A-Za-z0-9_-]+"),  # one-use login handles
    re.compile(r"(/ops/certificates/[a-z]+/)[0-9A-Fa-f]+"),  # serials
    re.compile(r"(/ocsp/)\S+"),  # base64 OCSP requests carry serials
)
_QUERY = re.compile(r"\?[^\s\"]*")


class RedactRequestLines(logging.Filter):
    """Access-log lines keep method, path and status; login handles and query strings are cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(text: str) -> str:
    for pattern in _PATHS:
        text = pattern.sub(r"\1…", text)
    return _QUERY.sub("?…", text)


def configure() -> None:
    for name in ("authlib", "nfc"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactRequestLines) for f in werkzeug.filters):
        werkzeug.addFilter(RedactRequestLines())


# Fields a log record may carry besides its message: codes and identifiers of *events*, never of people.
SAFE_FIELDS = ("code", "result", "event_id", "type", "reason", "source", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and only the fields in SAFE_FIELDS."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        entry |= {name: getattr(record, name) for name in SAFE_FIELDS if hasattr(record, name)}
        if record.exc_info:
            entry["exception"] = record.exc_info[0].__name__  # the type only: tracebacks can carry values
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json_logs(level: int = logging.INFO) -> None:
    """Structured logs on stderr for the services (`make run`, or MYKEY_JSON_LOGS=1 under gunicorn)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactRequestLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    configure()
