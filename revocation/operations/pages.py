"""The operator console's revocation pages, over the same operations as the JSON API (revocation/operations/actions.py).

    GET  /operator/                       the state (red, amber, green: revocation/operations/state.py), charts of
                                          the last hour (revocation/operations/overview.py), event stream health
                                          (lag, pending, consumers) and CRL shard status
    GET  /operator/certificate            the lookup form
    POST /operator/certificate            a certificate's status, links, history and audit, with hold / release /
                                          revoke forms (the serial travels in form bodies, never in a URL, so
                                          no access log or proxy records it)
    POST /operator/certificate/action     hold | release | revoke with a comment (revoke: and a reason)
    GET  /operator/audit[?before=ID]      the audit log, newest first, 50 a page

Logging in and out: operator_console/console.py.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, g, request

from operator_console.console import operator_page, render
from revocation import services
from revocation.operations.actions import ISSUERS, MANUAL_REASONS, OperationError, lookup, manual_action
from revocation.operations.api import STREAM_ID
from revocation.operations.overview import overview
from revocation.operations.state import STALLED_MS

blueprint = Blueprint("operator_pages", __name__)
AUDIT_PAGE = 50


@blueprint.get("/")
@operator_page
def dashboard():
    current = services.current()
    stream = current.stream.health()
    for consumer in stream["consumers"]:
        consumer["stalled"] = consumer["pending"] > 0 and consumer["idle_ms"] > STALLED_MS
    current.stream_lag.sample(lambda: stream["lag"])  # the chart has a point even while no worker samples it
    shards = current.crl.status()
    now = dt.datetime.now(dt.UTC)
    overdue = sum(1 for shard in shards if shard.next_update is None or shard.next_update <= now)
    state, charts = overview(current, stream, shards, now)
    return render("operator/dashboard.html", stream=stream, shards=shards, overdue=overdue, state=state,
                  charts=charts)


@blueprint.get("/certificate")
@operator_page
def certificate_form():
    return render("operator/certificate.html", issuers=ISSUERS, reasons=MANUAL_REASONS, found=None)


@blueprint.post("/certificate")
@operator_page
def certificate():
    return _certificate_page(request.form.get("issuer", ""), request.form.get("serial", "").strip())


@blueprint.post("/certificate/action")
@operator_page
def certificate_action():
    issuer, serial = request.form.get("issuer", ""), request.form.get("serial", "").strip()
    try:
        outcome = manual_action(services.current(), g.actor, issuer, serial, request.form.get("action", ""),
                                request.form.get("comment", ""), request.form.get("reason") or None)
    except OperationError as error:
        return _certificate_page(issuer, serial, error=error)
    return _certificate_page(issuer, serial, notice=outcome["message"], changed=outcome["changed"])


def _certificate_page(issuer: str, serial: str, error: OperationError | None = None, **notice):
    found, status = None, 200
    try:
        found = lookup(services.current(), issuer, serial)
    except OperationError as lookup_error:
        error = error or lookup_error
    if error is not None:
        status = error.status
    return render("operator/certificate.html", status, issuers=ISSUERS, reasons=MANUAL_REASONS, found=found,
                  error=error, **notice)


@blueprint.get("/audit")
@operator_page
def audit():
    before = request.args.get("before")
    if before is not None and not STREAM_ID.match(before):
        return render("operator/audit.html", 400, entries=[], error="That is not an audit entry id.", older=None)
    entries = services.current().audit.read(AUDIT_PAGE, before)
    older = entries[-1]["id"] if len(entries) == AUDIT_PAGE else None
    return render("operator/audit.html", entries=entries, older=older, error=None)
