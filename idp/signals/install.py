"""Put the signals parts into an IdP app: the SSF endpoints, the `ssf` client_credentials grant, the services."""

from __future__ import annotations

from idp.signals.endpoints import SsfClientCredentials
from idp.signals.endpoints import blueprint as signals_endpoints
from idp.signals.service import EXTENSION, build_signals


def install_signals(app, services, server) -> None:
    app.extensions[EXTENSION] = build_signals(services)
    server.register_grant(SsfClientCredentials)
    app.register_blueprint(signals_endpoints)
