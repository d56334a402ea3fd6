"""What both services' Flask apps share, built once: the request-body cap, the bounded JSON decoder, log
hygiene, `/metrics`, `/healthz`, and the answer when Redis cannot be reached.

Each service adds its own blueprints and its own error pages on top (the IdP's JSON for 404/405/413 and its
security headers, the revocation service's HTTP-error JSON and storage-layout check).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import redis
from flask import Flask, Response, jsonify

from observability import logs
from wire.json_input import BoundedJSONProvider

RETRY_AFTER_SECONDS = 5


def new_service_app(import_name: str, *, max_body_bytes: int, store: redis.Redis,
                    metrics: Callable[[], Response]) -> Flask:
    """A Flask app for one service (`import_name` locates its templates), with the shared parts installed."""
    if os.environ.get("MYKEY_JSON_LOGS") == "1":
        logs.use_json_logs()
    logs.configure()
    app = Flask(import_name)
    app.json = BoundedJSONProvider(app)  # request.get_json(): depth- and size-bounded, never a crash
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.add_url_rule("/metrics", "metrics", metrics)

    @app.get("/healthz")
    def healthz():
        store.ping()
        return jsonify(status="ok")

    app.register_error_handler(redis.ConnectionError, store_unavailable_response)
    app.register_error_handler(redis.TimeoutError, store_unavailable_response)
    return app


def store_unavailable_response(_error: Exception | None = None) -> Response:
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
