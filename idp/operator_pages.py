"""The IdP's page in the operator console: how card logins went over the last hour (a red/amber/green state and
charts, idp/operator_overview.py), then the registered relying-party clients (what `python -m idp clients list`
prints). Operators log in with the same tokens and sessions as on the revocation service's console
(operator_console/console.py); registering and removing clients stays on the CLI, where secrets are shown once.

    GET /operator/clients
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint

from idp.operator_overview import overview
from idp.services import current
from operator_console.console import operator_page, render

blueprint = Blueprint("operator_clients", __name__)


@blueprint.get("/clients")
@operator_page
def clients():
    state, charts = overview(current().logins_total, dt.datetime.now(dt.UTC))
    return render("operator/clients.html", clients=current().clients.list(), state=state, charts=charts)
