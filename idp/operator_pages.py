"""The IdP's page in the operator console: how card logins went over the last hour (a red/amber/green state and
charts, idp/operator_overview.py), the registered relying-party clients (what `python -m idp clients list`
prints), and how many access-record entries were written (counts only). Operators log in with the same tokens
and sessions as on the revocation service's console (operator_console/console.py); registering and removing
clients stays on the CLI, where secrets are shown once.

    GET /operator/clients
    GET /operator/signals     each receiver's stream, outbox and dead letters (idp/signals/)
"""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint

from idp.operator_overview import overview
from idp.services import current
from idp.signals.service import current_signals
from observability.metrics import flush_everywhere
from operator_console.console import operator_page, render

blueprint = Blueprint("operator_clients", __name__)


@blueprint.get("/clients")
@operator_page
def clients():
    state, charts = overview(current().logins_total, dt.datetime.now(dt.UTC))
    # The access record is the holders' alone (mykey/record.py): operators see how many entries were written, by
    # what they were sealed to, and nothing that says whose or where.
    counter = current().record_entries
    flush_everywhere(counter.redis)  # the counts of every IdP process, as /metrics gives them
    written = {json.loads(field)[0]: int(value) for field, value in counter.redis.hgetall(counter.key).items()}
    return render("operator/clients.html", clients=current().clients.list(), state=state, charts=charts,
                  record_entries=written)


@blueprint.get("/signals")
@operator_page
def signals():
    """Per relying party: its SSF stream (method, status), the tokens waiting in its outboxes with the head's
    tries, and the newest dead letters (codes and jti only: a dead letter never keeps the token)."""
    signals = current_signals()
    streams = signals.streams.all()
    rows = []
    for client in current().clients.list():
        stream = streams.get(client.client_id)
        if stream is None and not client.backchannel_logout_uri:
            continue
        outboxes = []
        for kind in ("ssf", "bcl"):
            name = f"{kind}:{client.client_id}"
            if (kind == "ssf" and stream) or (kind == "bcl" and client.backchannel_logout_uri):
                outboxes.append((kind, signals.outboxes.length(name), signals.outboxes.state(name)))
        rows.append({"client": client, "stream": stream, "outboxes": outboxes})
    return render("operator/signals.html", rows=rows, dead=signals.outboxes.dead_letters(),
                  names={c.client_id: c.name for c in current().clients.list()})
