"""The IdP's page in the operator console: registered relying-party clients (what `python -m idp clients list`
prints). Operators log in with the same tokens and sessions as on the revocation service's console
(operator_console/console.py); registering and removing clients stays on the CLI, where secrets are shown once.

    GET /operator/clients
"""

from __future__ import annotations

from flask import Blueprint

from idp.services import current
from operator_console.console import operator_page, render

blueprint = Blueprint("operator_clients", __name__)


@blueprint.get("/clients")
@operator_page
def clients():
    return render("operator/clients.html", clients=current().clients.list())
