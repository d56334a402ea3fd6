"""Values that must never reach a log line, registered as tests create them (serials, challenges, handles, the
signing PIN), and every line the platform logs during the suite. tests/test_zz_log_privacy.py checks them.

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


def register_sensitive(*values) -> None:
    for value in values:
        if isinstance(value, int):
            SENSITIVE.update({f"{value:X}", f"{value:x}", str(value)})
        elif value:
            SENSITIVE.add(str(value))
