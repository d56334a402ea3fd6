"""The revocation service's WSGI app: OCSP, CRLs and the operator API. Stateless; all state is in Redis.

OCSP is served by a bare WSGI callable placed in front of the Flask app (`app.wsgi_app`), so every way the app
is started — gunicorn, the development server, a test client — answers OCSP the one same way.

    gunicorn -c deploy/gunicorn-revocation.conf.py 'deploy.composition:revocation_app()'    # production
    deploy/granian-ocsp.sh --port 8083          # production OCSP data plane: create_ocsp_app under granian
    MYKEY_DEV=1 python -m revocation serve                                          # development

Configuration comes from the environment (docs/configuration.md); outside development the app refuses to
start without its production settings (revocation/config.py).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from observability import logs
from observability.metrics import gauge, metrics_response
from operator_console import console
from revocation.config import RevocationConfig
from revocation.crl.web import blueprint as crl_blueprint
from revocation.ocsp.wsgi import OcspEndpoint, WsgiApp, responder_app, with_ocsp
from revocation.operations.api import blueprint as ops_blueprint
from revocation.operations.pages import blueprint as pages_blueprint
from revocation.services import Services, build_services, install
from revocation.storage.store import StorageLayoutError
from wire.service_app import new_service_app


def create_app(config: RevocationConfig | None = None, services: Services | None = None) -> Flask:
    config = config or RevocationConfig.from_env()
    services = services or build_services(config)
    app = new_service_app(__name__, max_body_bytes=config.max_body_bytes, store=services.redis,
                          metrics=lambda: metrics_response([services.ocsp_responses, services.events_applied],
                                                           [lambda: revocation_gauges(services)]))
    install(app, services)  # request handlers reach them through revocation.services.current()

    # OCSP is answered in front of Flask, without a dispatch (revocation/ocsp/wsgi.py); everything else is Flask's.
    app.wsgi_app = with_ocsp(app.wsgi_app, OcspEndpoint(services.ocsp, services.ocsp_responses,
                                                        ready=services.claim_layout,
                                                        max_age=config.ocsp_http_max_age))
    app.register_blueprint(crl_blueprint)
    app.register_blueprint(ops_blueprint, url_prefix="/ops")
    console.install(app, console.Console(
        services.redis, services.operators, secure_cookies=not config.console_insecure_dev_cookies,
        links=(("Status", "/operator/"), ("Certificate", "/operator/certificate"), ("Audit", "/operator/audit"),
               *((("RP clients", config.console_peer_url),) if config.console_peer_url else ()))),
        home="operator_pages.dashboard")
    app.register_blueprint(console.blueprint, url_prefix=console.PREFIX)
    app.register_blueprint(pages_blueprint, url_prefix=console.PREFIX)

    @app.before_request
    def layout_checked():
        services.claim_layout()  # once: when Redis was unreachable at start, before the first request it answers

    @app.errorhandler(StorageLayoutError)
    def wrong_layout(error: StorageLayoutError):
        return jsonify(error=error.code, message=error.message), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Plain JSON with a stable code; never the request's content. Headers the error carries stay (a 405's
        # Allow, RFC 9110 §15.5.6).
        code = {413: "body_too_large", 404: "not_found", 405: "method_not_allowed"}.get(
            error.code, "internal_error" if (error.code or 500) >= 500 else "bad_request")
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        return jsonify(error=code, message=error.description), error.code, headers

    return app


def create_ocsp_app(config: RevocationConfig | None = None, services: Services | None = None) -> WsgiApp:
    """The OCSP data plane: the same responder and endpoint as `create_app`'s /ocsp, alone with /healthz, no Flask
    (revocation/ocsp/wsgi.py `responder_app`). Log hygiene as in every app; counts reach the same Redis totals, so
    the revocation app's /metrics still adds up every process."""
    config = config or RevocationConfig.from_env()
    if os.environ.get("MYKEY_JSON_LOGS") == "1":
        logs.use_json_logs()
    logs.configure()
    services = services or build_services(config)
    return responder_app(OcspEndpoint(services.ocsp, services.ocsp_responses, ready=services.claim_layout,
                                      max_age=config.ocsp_http_max_age), services.redis.ping)


def revocation_gauges(services: Services):
    health = services.stream.health()
    yield gauge("mykey_event_stream_lag", "Stream entries not yet delivered to the appliers", [],
                [([], health["lag"] or 0)])
    yield gauge("mykey_event_stream_pending", "Entries delivered but not yet acknowledged", [],
                [([], health["pending"])])
    yield gauge("mykey_event_stream_refused", "Entries moved to the dead-letter stream (refused or failed to apply)",
                [], [([], health["refused"])])
    yield gauge("mykey_crl_shard_age_seconds", "Seconds since each CRL shard was published", ["issuer", "shard"],
                [([shard.issuer, str(shard.shard)], shard.age_seconds)
                 for shard in services.crl.status() if shard.age_seconds is not None])
