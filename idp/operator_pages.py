"""The IdP's page in the operator console: registered relying-party clients (what `python -m idp clients list`
prints), and how many access-record entries were written (counts only). Operators log in with the same tokens and
sessions as on the revocation service's console (operator_console/console.py); registering and removing clients
stays on the CLI, where secrets are shown once.

    GET /operator/clients
"""

from __future__ import annotations

import json

from flask import Blueprint

from idp.services import current
from observability.metrics import flush_everywhere
from operator_console.console import operator_page, render

blueprint = Blueprint("operator_clients", __name__)


@blueprint.get("/clients")
@operator_page
def clients():
    # The access record is the holders' alone (mykey/record.py): operators see how many entries were written, by
    # what they were sealed to, and nothing that says whose or where.
    counter = current().record_entries
    flush_everywhere(counter.redis)  # the counts of every IdP process, as /metrics gives them
    written = {json.loads(field)[0]: int(value) for field, value in counter.redis.hgetall(counter.key).items()}
    return render("operator/clients.html", clients=current().clients.list(), record_entries=written)
