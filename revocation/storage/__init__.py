"""Revocation state in Redis: every key (keys.py), certificate status (store.py), the audit log and the event stream."""
