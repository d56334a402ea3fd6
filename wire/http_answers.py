"""Answers both services give the same way when the cause is on the platform's side, not the caller's."""

from __future__ import annotations

from flask import jsonify

RETRY_AFTER_SECONDS = 5


def store_unavailable_response():
    """Redis cannot be reached: 503 with Retry-After (RFC 9110 §15.6.4, §10.2.3), never a 500 with a traceback.

    `temporarily_unavailable` is OAuth's own code for it (RFC 6749 §4.1.2.1), so an RP library and a bridge read
    the same word.
    """
    response = jsonify(error="temporarily_unavailable",
                       message="The service cannot reach its data store right now. Try again in a few seconds.",
                       message_ja="ただいまデータを読み書きできません。数秒後にもう一度お試しください。")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response
