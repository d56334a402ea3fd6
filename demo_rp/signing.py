"""Example Shop's "sign this contract": a PDF signed by the customer's My Number Card, offered for download.

    GET  /contract              the contract and a button
    POST /contract/sign         prepare the PDF (demo_rp/pades.py), send the customer to the IdP with the digest
                                as RFC 9396 authorization_details
    (the shared /callback)      the token response's authorization_details → the signed PDF (`finish`)
    GET  /contract/signed.pdf   the signed file, for this browser only

What waits between the request and the callback (the prepared PDF) stays in this process, under a random key the
browser's session cookie holds, at most `MAX_WAITING` at a time and never longer than the login can take; the
signed file likewise, until downloaded once. A real shop would keep them in its own store.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict

from flask import Response, abort, redirect, render_template, session, url_for

from demo_rp.contract import contract_pdf
from demo_rp.pades import Prepared, finish, prepare

SHA256 = "2.16.840.1.101.3.4.2.1"
LABEL = "Example Shop sales contract"
MAX_WAITING = 100
WAIT_SECONDS = 15 * 60
CONTRACT_LINES = [
    "Example Shop sells the customer one cast-iron teapot.",
    "Price: 3,000 yen including tax, delivered within 7 days.",
    "The customer may return the teapot unused within 14 days.",
]


class _Waiting:
    """A bounded, expiring map: key → value, oldest dropped first."""

    def __init__(self):
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()

    def put(self, value) -> str:
        key = secrets.token_urlsafe(24)
        self._items[key] = (time.monotonic() + WAIT_SECONDS, value)
        while len(self._items) > MAX_WAITING:
            self._items.popitem(last=False)
        return key

    def take(self, key: str | None):
        found = self._items.pop(key, None) if key else None
        return found[1] if found and found[0] > time.monotonic() else None


def add_contract_signing(app, oauth, base_url: str) -> None:
    prepared_docs, signed_docs = _Waiting(), _Waiting()
    app.extensions["contract_signing"] = (prepared_docs, signed_docs)

    @app.get("/contract")
    def contract():
        return render_template("contract.html", lines=CONTRACT_LINES, signed=bool(session.get("signed_pdf")))

    @app.post("/contract/sign")
    def sign_contract():
        prepared = prepare(contract_pdf("Sales contract", CONTRACT_LINES), reason=LABEL)
        session["contract"] = prepared_docs.put(prepared)
        details = [{"type": "credential", "hashAlgorithmOID": SHA256,
                    "documentDigests": [{"hash": prepared.to_sign_b64, "label": LABEL}]}]
        return oauth.mykey.authorize_redirect(f"{base_url}/callback", authorization_details=json.dumps(details))

    @app.get("/contract/signed.pdf")
    def signed_pdf():
        pdf = signed_docs.take(session.pop("signed_pdf", None))
        if pdf is None:
            abort(404)
        return Response(pdf, mimetype="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="contract-signed.pdf"',
                                 "Cache-Control": "no-store"})


def finish_contract(app, token: dict):
    """From the callback: when the token response carries signatures for the waiting contract, the signed PDF."""
    details = token.get("authorization_details")
    prepared_docs, signed_docs = app.extensions["contract_signing"]
    prepared: Prepared | None = prepared_docs.take(session.pop("contract", None))
    if not details or prepared is None:
        return None
    session["signed_pdf"] = signed_docs.put(finish(prepared, details[0], tsa_url=app.config.get("TSA_URL")))
    return redirect(url_for("contract"))
