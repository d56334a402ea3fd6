"""The one shape of a refusal: a stable machine-readable `code` and a sentence for a person.

Pages, JSON answers, command lines and tests all read the same two fields, so an error family anywhere in the
platform subclasses `CodedError` rather than writing its own `__init__`. The sentence is written to be shown and
logged: it never carries a PIN, a serial, a challenge, a signature, a token or any of the four basic facts.

Two ways to fix the code, both kept by the subclasses that already had them:

- a family whose members each mean one thing names the code on the class (`code = "card_removed"`) and is raised
  with the sentence alone (`FixedCodeError`);
- a family whose code varies per raise passes it: `LoginError("challenge_expired", "…", status=410)`.

`status` is a hint for an HTTP edge (RFC 9110 §15): the status that edge answers with unless it knows better.
"""

from __future__ import annotations


class CodedError(Exception):
    """An error with a stable `code` (lower_snake_case, never reworded once published) and a `message`."""

    code: str = "error"
    status: int = 400

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def __repr__(self) -> str:  # the code only: a repr lands in tracebacks and logs
        return f"{type(self).__name__}({getattr(self.code, 'value', self.code)!r})"


class FixedCodeError(CodedError):
    """A `CodedError` whose code is named on its class: raised with the sentence alone."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(type(self).code, message, status)
