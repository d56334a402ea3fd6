"""Runs last (file order): no serial, challenge, login handle or signing PIN in any log line of the whole suite.

The auth PIN "1234" is too common a string to search for in logs (ports, times); the PIN paths are covered by
tests/test_client.py, tests/test_transport_nfcpy.py and the bridge output checks instead.
"""

from tests.log_registry import LOG_LINES, SENSITIVE, collection_problems


def test_nothing_sensitive_was_logged_during_the_suite():
    assert not (problems := collection_problems()), f"the log privacy check would see nothing: {problems}"
    leaks = {line.split(" ", 1)[0] for line in LOG_LINES for value in SENSITIVE if len(value) >= 6 and value in line}
    assert not leaks, f"sensitive values reached log lines of these loggers: {sorted(leaks)}"
