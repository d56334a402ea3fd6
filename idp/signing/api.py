"""The card side's refusal of a signing request: `POST /api/signing/decline` with the submit token and a reason.

`signing_declined` — the holder read the documents and said no; `signing_pin_locked` — the signing PIN is locked,
so the card cannot sign (only the municipal office resets it). Either spends the submission, and the login fails
with that code: the login page says so, and the website receives no signature. A holder's no also goes back to
the website as the OAuth answer to its request, `error=access_denied` with its `state` and `iss` (RFC 6749
§4.1.2.1, RFC 9207), at the redirect URI that was checked when the request came in (`declined_redirect`); a locked
PIN stays on the login page, whose sentence says what to do. Anything else is
proof_malformed. Nothing about the documents is logged, only the code.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Blueprint, jsonify, request

from idp.login.bridge_api import error_response
from idp.login.transactions import LoginTransaction
from idp.services import current
from idp.signing.flow import request_of

log = logging.getLogger(__name__)
blueprint = Blueprint("signing", __name__)

DECLINE_CODES = frozenset({"signing_declined", "signing_pin_locked"})


@blueprint.post("/api/signing/decline")
def decline():
    """The card side's refusal: the holder said no, or the signing PIN is locked. Spends the submission."""
    body = request.get_json(silent=True)
    if (not isinstance(body, dict) or set(body) != {"submit_token", "reason"}
            or not isinstance(body["reason"], str) or body["reason"] not in DECLINE_CODES
            or not isinstance(body["submit_token"], str)):
        return error_response("proof_malformed", 400)
    services = current()
    txn = services.logins.claim_submission(body["submit_token"])
    if request_of(txn) is None:
        return error_response("proof_malformed", 400)
    services.logins.finish(txn, error=body["reason"])
    log.info("document signing declined", extra={"code": body["reason"]})
    return jsonify(result=body["reason"], message="The website will be told that nothing was signed.",
                   message_ja="何も署名されなかったことがサイトに伝えられます。")


def declined_redirect(txn: LoginTransaction) -> str | None:
    """Where a browser goes after the holder declined to sign: the website's redirect URI with access_denied; None
    for any other outcome, or when the request's client or redirect URI is not (or no longer) registered."""
    if txn.state != "failed" or txn.error != "signing_declined":
        return None
    query = parse_qs(urlsplit(txn.return_to).query)
    redirect_uri, state = (query.get("redirect_uri") or [None])[0], (query.get("state") or [None])[0]
    client = current().clients.get(txn.client_id)
    if not redirect_uri or client is None or not client.check_redirect_uri(redirect_uri):
        return None
    params = {"error": "access_denied", "error_description": "The holder declined to sign the documents."}
    params |= {"state": state} if state else {}
    params["iss"] = current().config.issuer
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"
