"""The card side's refusal of a signing request: `POST /api/signing/decline` with the submit token and a reason.

`signing_declined` — the holder read the documents and said no; `signing_pin_locked` — the signing PIN is locked,
so the card cannot sign (only the municipal office resets it). Either spends the submission, and the login fails
with that code: the login page says so, and the website receives no signature. Anything else is
proof_malformed. Nothing about the documents is logged, only the code.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from idp.login.bridge_api import error_response
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
