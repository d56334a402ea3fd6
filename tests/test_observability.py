"""Structured logs: one JSON object per line, only safe fields, access-log paths redacted."""

import json
import logging

from observability.logs import JsonFormatter, RedactRequestLines


def format_record(message, *args, **extra):
    record = logging.LogRecord("idp.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    RedactRequestLines().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_json_lines_carry_only_safe_fields():
    entry = format_record("card login refused", code="certificate_revoked", serial="7F94", pin="1234")
    assert entry["message"] == "card login refused" and entry["code"] == "certificate_revoked"
    assert "serial" not in entry and "pin" not in entry and entry["level"] == "INFO"


def test_access_log_paths_lose_handles_serials_ocsp_requests_and_queries():
    line = format_record('"%s %s HTTP/1.1" %s', "GET", "/api/login/AbCdEf0123456789xyz", "200")["message"]
    assert "AbCdEf" not in line and "/api/login/…" in line
    assert "7F942556" not in format_record('"GET /ops/certificates/auth/7F942556F9524C15 HTTP/1.1"')["message"]
    assert "MEkw" not in format_record('"GET /ocsp/MEkwRzBFMEMwQTAJBgUrDgMCGgUABBQ HTTP/1.1"')["message"]
    assert "nonce" not in format_record('"GET /authorize?client_id=x&nonce=abc HTTP/1.1"')["message"]
    assert "/api/login/submit" in format_record('"POST /api/login/submit HTTP/1.1"')["message"]


def test_exceptions_are_reduced_to_their_type():
    try:
        raise ValueError("holder 1234-5678-9012")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exception"] == "ValueError" and "5678" not in json.dumps(entry)
