"""The JSON API that bridges and phone apps use to answer a login (docs/bridge-api.yaml).

    GET  /api/login/<handle>   one fetch: RP name, short code, origin, challenge(s), what will be shared,
                               and a one-use submit token; to a browser (Accept rates text/html above JSON:
                               a phone's camera opened the QR code) a page saying how to answer the login
                               instead, which spends nothing and reveals nothing (`fetch`)
    POST /api/login/submit     certificate(s), signature(s), token type → verified, or a stable error code

The status of a refusal says whose problem it is (`STATUS_OF`, the same table as docs/bridge-api.yaml): what the
client sent is a 400, the certificate's own state (revoked, suspended, expired, not yet valid) a 403, and a
condition on the platform's side — the revocation status cannot be learnt — a 503 with Retry-After
(RFC 9110 §15.6.4, §10.2.3), so that a bridge or a phone app tells the holder to try again rather than that their
card is at fault. Transaction problems (unknown, spent, expired) carry their own status
(idp.login.transactions.LoginError).

The token type the bridge reports goes into the certificate reference that the session, the authorization code
and the tokens carry, so the ID token's `amr`, the access record and the login metric say whether a card or a
phone was used (docs/relying-parties.md).

Redis on a submit, in round trips (the hot path; bench/login.py): the submit token is claimed and the transaction
read in one command (idp/login/transactions.py); after the verification pipeline, the certificate's record in the
status store and its MyKey mapping in one pipeline; the account; the outcome saved. Four, where it was seven.

Nothing sensitive is logged: results are logged by code only.
"""

from __future__ import annotations

import base64
import binascii
import logging

from flask import Blueprint, jsonify, make_response, render_template, request

from idp.login.messages import explain, language
from idp.login.transactions import LoginError, LoginTransaction
from idp.login.verification import TOKEN_TYPES, ErrorCode, VerificationError, check_record
from idp.services import current
from idp.signing import flow as signing_flow
from jpki.certificate import FourFacts
from jpki.signature import login_message

blueprint = Blueprint("login_api", __name__)
log = logging.getLogger(__name__)

MAX_FIELD = 16 * 1024  # base64 of an 8 KB certificate fits comfortably
RETRY_AFTER_SECONDS = 30  # long enough for an OCSP responder restart or a CRL republication

STATUS_OF: dict[str, int] = {
    # what the client sent
    ErrorCode.PROOF_MALFORMED: 400,
    ErrorCode.CERTIFICATE_MALFORMED: 400,
    ErrorCode.NOT_JPKI_CERTIFICATE: 400,
    ErrorCode.SIGNING_CERTIFICATE_USED_FOR_LOGIN: 400,
    ErrorCode.AUTH_CERTIFICATE_USED_FOR_SIGNING: 400,
    ErrorCode.KEY_USAGE_INVALID: 400,
    ErrorCode.UNTRUSTED_ISSUER: 400,
    ErrorCode.SIGNATURE_INVALID: 400,
    ErrorCode.CERTIFICATES_NOT_LINKED: 400,
    ErrorCode.SIGNED_ATTRIBUTES_INVALID: 400,
    # the certificate's state: understood, and refused
    ErrorCode.CERTIFICATE_REVOKED: 403,
    ErrorCode.CERTIFICATE_ON_HOLD: 403,
    ErrorCode.CERTIFICATE_EXPIRED: 403,
    ErrorCode.CERTIFICATE_NOT_YET_VALID: 403,
    # the platform's side
    ErrorCode.REVOCATION_UNKNOWN: 503,
}


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def error_response(code: str, status: int):
    response = jsonify(error=code, message=explain(code, "en"), message_ja=explain(code, "ja"))
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


@blueprint.errorhandler(LoginError)
def _login_error(error: LoginError):
    log.info("login api refused", extra={"code": error.code})
    return error_response(error.code, error.status)


def prefers_page() -> bool:
    """A browser's navigation (a phone's camera opened the QR code): its Accept rates text/html above JSON.

    `*/*`, no Accept at all, or JSON rated at least as high (the bridge, a phone app, a script) keep the JSON.
    """
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


@blueprint.get("/api/login/<handle>")
def fetch(handle: str):
    """The card side's one fetch, or — to a browser — a page that says how to answer the login instead.

    The page is side-effect free: it does not look the handle up, so it neither spends the handle nor mints a
    submit token (a camera app may prefetch the URL; the holder's app must still work after it), and it says
    nothing about the login (no challenge, website internals or token), nor whether the handle is still good.
    A HEAD request (Flask routes it here) spends nothing either: only a GET that wants JSON takes the handle.
    It offers no field for a PIN: a PIN is typed into the card reader program or the app, never a web page.
    """
    if request.method == "HEAD":  # a prefetcher's probe: answer the headers a GET would, spend nothing
        response = make_response("", 200)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Accept, Accept-Language, Cookie"
        return response
    if prefers_page():
        response = make_response(render_template("handle.html", lang=language()))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Accept, Accept-Language, Cookie"
        return response
    try:
        txn, submit_token = current().logins.fetch(handle)
    except LoginError as error:  # the refusal varies by Accept too
        response, status = _login_error(error)
        response.headers["Vary"] = "Accept"
        return response, status
    response = jsonify(
        rp_name=txn.rp_name,
        short_code=txn.short_code,
        origin=txn.origin,
        challenge=txn.challenge,
        signing_challenge=txn.signing_challenge,
        share=txn.share,
        expires_at=txn.expires_at,
        submit_url=f"{current().config.issuer}/api/login/submit",
        submit_token=submit_token,
        **signing_flow.fetch_fields(txn),
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept"
    return response


@blueprint.post("/api/login/submit")
def submit():
    body = request.get_json(silent=True)
    if not request.is_json or not isinstance(body, dict):
        return error_response("proof_malformed", 400)
    fields = ("submit_token", "token_type", "certificate", "signature", "signing_certificate", "signing_signature")
    if set(body) - {*fields, "document_signatures", "document_signed_attributes"} or any(  # idp/signing/flow.py
            not isinstance(body.get(f), str | None) or len(body.get(f) or "") > MAX_FIELD for f in fields):
        return error_response("proof_malformed", 400)
    txn = current().logins.claim_submission(body.get("submit_token") or "")
    # A label value is one of a few names, never what the client wrote.
    token_type = body["token_type"] if body.get("token_type") in TOKEN_TYPES else "unknown"
    try:
        result = _verify(txn, body)
    except VerificationError as error:
        current().logins.finish(txn, error=error.code)
        current().logins_total.inc(result=error.code, token_type=token_type)
        log.info("card login refused", extra={"code": error.code})
        return error_response(error.code, STATUS_OF[error.code])
    current().logins.finish(txn, result=result)
    current().logins_total.inc(result="ok", token_type=token_type)
    log.info("card login verified", extra={"code": "ok"})
    return jsonify(result="ok", message="Verified. Return to your browser to continue.",
                   message_ja="確認できました。ブラウザに戻って続けてください。")


def _decode(body: dict, name: str) -> bytes:
    value = body.get(name)
    if not value:
        raise VerificationError("proof_malformed", f"The field {name} is missing.")
    try:
        return _b64decode(value)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("proof_malformed", f"The field {name} is not base64url.") from exc


def _verify(txn: LoginTransaction, body: dict) -> str:
    """Run the verification pipeline(s), map the certificate to its account, and seal the result."""
    services = current()
    token_type = body.get("token_type")  # checked by the verifier (check_size_and_shape)
    verified = services.verifier.verify_login(_decode(body, "certificate"), _decode(body, "signature"),
                                              txn.origin, _b64decode(txn.challenge), token_type=token_type)
    serial = verified.certificate.serial
    mapped = checked_record_and_mapping(services, verified.issuer, serial)
    facts = None
    if txn.signing_challenge:
        message = login_message(txn.origin, _b64decode(txn.signing_challenge))
        signing = services.verifier.verify_signing(_decode(body, "signing_certificate"),
                                                   _decode(body, "signing_signature"), message, token_type=token_type)
        record = services.certificates.find(signing.issuer, signing.certificate.serial)
        if record is None or record.auth_serial != serial:  # 紐付け: both certificates from one card
            raise VerificationError("certificates_not_linked",
                                    "The signing and user-authentication certificates are not from the same card.")
        check_record(record)
        facts = services.sealer.seal(_claims_from(signing.certificate.four_facts), "four-facts")
    # Documents to sign (idp/signing/flow.py): signed by the same card's signing key, verified, kept for the code.
    signing = None
    if body.get("document_signatures") is not None or body.get("document_signed_attributes") is not None \
            or txn.extra.get(signing_flow.EXTRA):
        signing = signing_flow.verify_submission(services, txn, body, serial, token_type,
                                                 _decode(body, "signing_certificate"))
    now = services.clock()
    account = services.mykey.resolve(verified.issuer, serial, now, mapped=mapped)
    certificate = services.seal_certificate(verified.issuer, serial, verified.token_type)
    return services.sealer.seal({"account_id": account.account_id, "auth_time": int(now.timestamp()),
                                 "certificate": certificate, "facts": facts, "signing": signing}, "login-result")


def checked_record_and_mapping(services, issuer: str, serial: int):
    """The store of record's check of a verified certificate, and the account mapping of its serial, read in one
    round trip (two slots; reads only). The store of record has the last word: never issued, revoked or on hold is
    refused (`check_record`) whatever OCSP said. Returns the mapping for `MyKeyDirectory.resolve(mapped=…)`."""
    with services.redis.pipeline(transaction=False) as pipe:
        record_of = services.certificates.find_queued(pipe, issuer, serial)
        mapping_of = services.mykey.queue_mapping(pipe, issuer, serial)
        record_reply, mapping_reply = pipe.execute()
    check_record(record_of(record_reply))
    return mapping_of(mapping_reply)


def _claims_from(facts: FourFacts) -> dict:
    """OIDC standard claims (OIDC Core §5.1) from the signing certificate's four basic facts."""
    return {
        "name": facts.name,
        "address": {"formatted": facts.address},
        "birthdate": facts.birthdate.isoformat(),
        "gender": {"1": "male", "2": "female"}.get(facts.sex, "other"),
    }
