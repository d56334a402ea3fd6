"""The IdP's WSGI app: OpenID Provider endpoints, the bridge API, and the cardholder's pages.

    gunicorn -c deploy/gunicorn-idp.conf.py 'deploy.composition:idp_app()'    # production
    MYKEY_DEV=1 python -m deploy serve idp                                     # development

`create_app` takes the services already built: the composition root (deploy/composition.py) builds them with
what the IdP reads of the certificate status store.

Configuration comes from the environment (docs/configuration.md); outside development the app refuses to
start without its production settings (idp/config.py).
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from idp.config import IdpConfig
from idp.holder.history import blueprint as history
from idp.holder.pages import blueprint as pages
from idp.login.bridge_api import blueprint as login_api
from idp.oidc.endpoints import blueprint as oidc
from idp.oidc.provider import build_authorization_server
from idp.operator_pages import blueprint as operator_pages
from idp.services import EXTENSION, IdpServices
from idp.signals.install import install_signals
from idp.signing.api import blueprint as signing_api
from observability.metrics import metrics_response
from operator_console import console
from operator_console.registry import OperatorRegistry
from wire.service_app import new_service_app


def _operator_console(app: Flask, config: IdpConfig, services: IdpServices) -> None:
    """The operator console's RP clients page, logged in like the revocation service's console."""
    console.install(app, console.Console(
        services.redis, OperatorRegistry(services.redis), secure_cookies=not config.insecure_dev_cookies,
        links=(("RP clients", "/operator/clients"), ("Signals", "/operator/signals"),
               ("Revocation", f"{config.revocation_url}/operator/"))),
        home="operator_clients.clients")
    app.register_blueprint(console.blueprint, url_prefix=console.PREFIX)
    app.register_blueprint(operator_pages, url_prefix=console.PREFIX)


def create_app(config: IdpConfig, services: IdpServices) -> Flask:
    app = new_service_app(__name__, max_body_bytes=config.max_body_bytes, store=services.redis,
                          metrics=lambda: metrics_response([services.logins_total, services.record_entries]))
    app.extensions[EXTENSION] = services
    server, _ = build_authorization_server(app, services)
    app.extensions["idp_server"] = server

    app.register_blueprint(oidc)
    install_signals(app, services, server)  # SSF transmitter and back-channel logout (idp/signals/)
    app.register_blueprint(login_api)
    app.register_blueprint(signing_api)
    app.register_blueprint(pages)
    app.register_blueprint(history)
    _operator_console(app, config, services)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path in ("/login", "/account") or request.path.startswith("/consent"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(413)
    def too_large(_error):
        return jsonify(error="invalid_request", message="The request body is too large."), 413

    @app.errorhandler(404)
    def not_found(_error):
        return jsonify(error="not_found", message="There is nothing at this address."), 404

    @app.errorhandler(405)
    def not_allowed(error):
        allow = [(name, value) for name, value in error.get_headers() if name.lower() == "allow"]
        return jsonify(error="invalid_request", message="This address does not take that method."), 405, allow

    return app
