"""Every Redis key the operator console uses, built here and nowhere else.

The names keep the `rv:` prefix they had when the console lived in the revocation service, so operator tokens
and open sessions survive the move. Neither key is multi-key with another, so neither needs a hash tag.
"""

from __future__ import annotations

PREFIX = "rv"
OPERATORS = f"{PREFIX}:operators"  # hash: token hash -> operator record
CONSOLE_SESSIONS = f"{PREFIX}:console"  # prefix of operator console sessions: <prefix>:<hash of session id>
