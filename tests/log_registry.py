"""Values that must never reach a log line, registered as tests create them (serials, challenges, handles, the
signing PIN), and every line the platform logs during the suite. tests/test_zz_log_privacy.py checks them;
`collection_problems` says when what was collected is too little for that check to mean anything.

A module of its own so that conftest and the check share one instance (pytest imports conftest by another name).
"""

from __future__ import annotations

import logging

SENSITIVE: set[str] = {"ABC123"}  # the test cards' signing PIN
LOG_LINES: list[str] = []


class LogCollector(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("urllib3", "hypothesis")):  # the tests' own HTTP client, not the platform
            return
        try:
            self.lines.append(f"{record.name} {record.getMessage()} {record.__dict__}")
        except Exception:  # a record that cannot be formatted is still worth a line
            self.lines.append(f"{record.name} {record.msg}")


# The check proves nothing unless it read lines where a leak would land: the HTTP access log (paths carry login
# handles and serials) and the services' own loggers, and unless tests registered values to look for.
EXPECTED_LOGGERS = {
    "werkzeug": "HTTP access lines",
    "idp.": "lines of the IdP",
    "revocation.": "lines of the revocation service",
}
MIN_SENSITIVE_VALUES = 10  # the suite registers hundreds: serials, challenges, login handles


def collection_problems(lines: list[str] = LOG_LINES, sensitive: set[str] = SENSITIVE) -> list[str]:
    """Why a scan of `lines` for `sensitive` would see nothing that matters; empty when it is worth running."""
    names = {line.split(" ", 1)[0] for line in lines}
    problems = [f"no {what} were collected (loggers {prefix}*)" for prefix, what in EXPECTED_LOGGERS.items()
                if not any(name == prefix or (prefix.endswith(".") and name.startswith(prefix)) for name in names)]
    searched = [value for value in sensitive if len(value) >= 6]
    if len(searched) < MIN_SENSITIVE_VALUES:
        problems.append(f"only {len(searched)} sensitive values were registered to look for")
    return problems


def register_sensitive(*values) -> None:
    for value in values:
        if isinstance(value, int):
            SENSITIVE.update({f"{value:X}", f"{value:x}", str(value)})
        elif value:
            SENSITIVE.add(str(value))
