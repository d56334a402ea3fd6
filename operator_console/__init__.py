"""The operator console both services use: operator tokens (registry.py), web sessions, login and page helpers."""
