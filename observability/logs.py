"""Log hygiene for both services: nothing sensitive in any log line.

Authlib logs issued tokens at DEBUG, nfcpy dumps APDUs (PINs) at DEBUG, and an HTTP access log would carry
secrets and personal data in paths: the one-use login (and access-record) handle, certificate serials in
operator URLs, OCSP requests (serials) in GET URLs, and every query string (state, nonce, codes). These loggers
are capped or redacted here, once, when an app is created — both access logs included: werkzeug's (`make run`)
and gunicorn's (`--access-logfile` with deploy/'s settings), which hands its fields over as one mapping rather
than in the text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping

_PATHS = (
    re.compile(r"(/api/login/)(?!submit\b)[A-Za-z0-9_-]+"),  # one-use login handles
    re.compile(r"(/api/history/)(?!submit\b)[A-Za-z0-9_-]+"),  # one-use handles opening an access record
    re.compile(r"(/ops/certificates/[a-z]+/)[0-9A-Fa-f]+"),  # serials
    re.compile(r"(/ocsp/)\S+"),  # base64 OCSP requests carry serials
)
# A query string: in a request line, everything up to the protocol (a decoded query can hold quotes and spaces —
# RFC 9396 authorization_details is JSON), elsewhere up to a space or a quote.
_QUERY = re.compile(r"\?(?:.*?(?=\sHTTP/\d)|[^\s\"]*)")
# gunicorn's access-log fields (gunicorn.glogging.Logger.atoms) that are secret whole, whatever their text: the bare
# query string, and the credentials an operator's access_log_format could name as `{header}i`, `{header}o` or
# `{environ key}e`. The other fields (request line `r`, path `U`, referer `f` …) are redacted like any text.
_SECRET_ATOMS = frozenset({"q", "{query_string}e", "{cookie}i", "{authorization}i", "{set-cookie}o",
                           "{http_cookie}e", "{http_authorization}e"})
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")


class RedactRequestLines(logging.Filter):
    """Access-log lines keep method, path and status; login handles and query strings are cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, MutableMapping):  # gunicorn's atoms, changed in place to keep their lookup rules
            for key, value in list(record.args.items()):
                if key in _SECRET_ATOMS and value not in (None, "", "-"):
                    record.args[key] = "…"
                elif isinstance(value, str):
                    record.args[key] = _redact(value)
        elif record.args:
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
    for name in ACCESS_LOGGERS:
        access = logging.getLogger(name)
        if not any(isinstance(f, RedactRequestLines) for f in access.filters):
            access.addFilter(RedactRequestLines())


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
