"""Opening the holder's access record with their card, for one view of the account page.

The record is sealed to a key made from the card's signature over this platform's history message (mykey/record.py,
jpki.signature.history_message). Opening it is an exchange much like a login (idp/login/transactions.py), with its
own handle, submit token and check code, and its own bridge command (`python -m nfc_bridge history`), which tells
the holder it opens their record and is not a login:

    POST /account/history/open     (account page, CSRF) a new opening bound to this browser → the waiting page
    GET  /account/history          the waiting page: QR code, bridge command, check code
    GET  /account/history/status   waiting | fetched | verified | failed (the page polls it)
    GET  /api/history/<handle>     the bridge's one fetch: origin, check code, purpose, one-use submit token
    POST /api/history/submit       the auth certificate and its signature over the history message

Where the key is, and for how long. The bridge's signature reaches the submit handler, which checks it like a login
(the same pipeline, over the history message), derives the holder's private key, and must hand it to the browser's
next page view — a different request, possibly another worker. It is never stored in a form Redis or the platform's
secrets can open: when the opening starts, the browser gets a random secret (a `__Host-` cookie; Redis keeps only its
SHA-256) and Redis keeps the X25519 public key derived from that secret; the submit handler seals the holder's key to
it with HPKE. The account page's next view reads the cookie, opens the sealed key, opens the record, renders it and
deletes the opening (one view: a reload shows the record closed again). The opening expires with the login TTL.

The card must be the one of the account whose page asked: the certificate's MyKey mapping must be that account
(`history_other_card` otherwise), so a second person's card opens nothing here, and their own record is not touched.
Nothing sensitive is logged: outcomes by code only.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass

import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Blueprint, jsonify, make_response, redirect, render_template, request

from idp import keys
from idp.holder.cookies import SESSION_COOKIE, clear_cookie, read_cookie, set_cookie
from idp.login.bridge_api import MAX_FIELD, STATUS_OF, checked_record_and_mapping, error_response, prefers_page
from idp.login.messages import explain, language
from idp.login.transactions import SPENT, LoginError
from idp.login.verification import TOKEN_TYPES, VerificationError
from idp.services import IdpServices, current
from mykey.keys import as_text
from mykey.record import SUITE, OpenedRecord, RecordError, decode_key, encode_key, holder_key, public_bytes

blueprint = Blueprint("history", __name__)
log = logging.getLogger(__name__)

HISTORY_COOKIE = "mykey-history"
PURPOSE = "access_record"  # what the bridge's fetch says this is: never a login
_BROWSER_KEY_INFO = b"mykey access record opening: browser key v1"
_SEALED_INFO = b"mykey access record opening: holder key v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _browser_key(secret: str) -> X25519PrivateKey:
    """The key only the browser's cookie can make again: the holder's key is sealed to its public half."""
    return X25519PrivateKey.from_private_bytes(
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_BROWSER_KEY_INFO).derive(secret.encode()))


@dataclass(frozen=True)
class Opening:
    account_id: str
    handle: str  # the bridge's one-use link (in the QR code and the command), like a login's
    short_code: str
    browser_key: str  # base64url X25519 public key
    state: str = "waiting"  # waiting → fetched → verified | failed
    error: str | None = None
    sealed: str | None = None  # base64url HPKE: the holder's key, sealed to browser_key

    def __repr__(self) -> str:
        return f"Opening(state={self.state})"


class OpeningStore:
    """Openings in Redis by the digest of the browser's secret; handle and submit token by their digests."""

    def __init__(self, services: IdpServices):
        self.redis = services.redis
        self.ttl = int(services.config.login_ttl.total_seconds())

    def create(self, account_id: str) -> tuple[str, Opening]:
        """A new opening for this account: (the browser's secret, the opening)."""
        secret = _b64(secrets.token_bytes(32))
        opening = Opening(account_id, _b64(secrets.token_bytes(24)), f"{secrets.randbelow(10_000):04d}",
                          _b64(public_bytes(_browser_key(secret))))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.history(_digest(secret)), json.dumps(vars(opening)), ex=self.ttl)
            pipe.set(keys.history_handle(_digest(opening.handle)), _digest(secret), ex=self.ttl)
            pipe.execute()
        return secret, opening

    def get(self, digest: str | None) -> Opening | None:
        raw = self.redis.get(keys.history(digest)) if digest else None
        return Opening(**json.loads(raw)) if raw else None

    def of_browser(self, secret: str | None) -> Opening | None:
        return self.get(_digest(secret)) if secret and len(secret) < 100 else None

    def fetch(self, handle: str) -> tuple[Opening, str]:
        """The bridge's one fetch: the opening and a one-use submit token."""
        if not isinstance(handle, str) or not 10 <= len(handle) <= 64:
            raise LoginError("unknown_handle", "This link was already used or has expired.", 404)
        digest = as_text(self.redis.getdel(keys.history_handle(_digest(handle))))
        opening = self.get(digest)
        if opening is None:
            raise LoginError("unknown_handle", "This link was already used or has expired.", 404)
        token = _b64(secrets.token_bytes(32))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.history_submit(_digest(token)), digest, ex=self.ttl)
            pipe.set(keys.history(digest), json.dumps(vars(Opening(**{**vars(opening), "state": "fetched"}))),
                     xx=True, keepttl=True)
            pipe.execute()
        return opening, token

    def claim(self, token: str) -> tuple[str, Opening]:
        """The single submission a submit token allows: (the opening's digest, the opening)."""
        if not isinstance(token, str) or not 10 <= len(token) <= 64:
            raise LoginError("unknown_submission", "This answer does not belong to an opening in progress.", 404)
        claimed = self.redis.set(keys.history_submit(_digest(token)), SPENT, xx=True, keepttl=True, get=True)
        if claimed == SPENT:
            raise LoginError("challenge_used", "This answer was already used; start again.", 409)
        opening = self.get(as_text(claimed)) if claimed else None
        if opening is None:
            raise LoginError("unknown_submission", "This answer does not belong to an opening in progress.", 404)
        return as_text(claimed), opening

    def finish(self, digest: str, opening: Opening, *, sealed: str | None = None, error: str | None = None) -> None:
        state = "verified" if error is None else "failed"
        finished = Opening(**{**vars(opening), "state": state, "sealed": sealed, "error": error})
        self.redis.set(keys.history(digest), json.dumps(vars(finished)), xx=True, keepttl=True)

    def take(self, secret: str) -> dict | None:
        """For the page view: the holder's key and certificate, once, if the opening is verified; it is deleted."""
        opening = self.of_browser(secret)
        if opening is None or opening.state != "verified" or not opening.sealed:
            return None
        if not self.redis.delete(keys.history(_digest(secret))):  # another view took it first
            return None
        try:
            return json.loads(SUITE.decrypt(_b64decode(opening.sealed), _browser_key(secret), info=_SEALED_INFO))
        except (InvalidTag, ValueError):
            return None


def open_for_view(services: IdpServices, account_id: str) -> tuple[OpenedRecord | None, str | None]:
    """The holder's record for this page view when their card has just opened it, else (None, None); or
    (None, error code) when the card's key does not open it. The key is dropped when this returns."""
    taken = OpeningStore(services).take(read_cookie(HISTORY_COOKIE) or "")
    if taken is None or taken.get("account_id") != account_id:
        return None, None
    try:
        return services.access_record.open(account_id, decode_key(taken["key"]), taken["cert"],
                                           dt.date.fromisoformat(taken["renewed_on"]), services.clock()), None
    except RecordError as error:
        log.info("access record not opened", extra={"code": error.code})
        return None, error.code


# --- the browser's side ----------------------------------------------------------------------------------------


def _session():
    services = current()
    return services.sessions.get(read_cookie(SESSION_COOKIE))


@blueprint.post("/account/history/open")
def start_opening():
    session = _session()
    if session is None or request.form.get("csrf") != session.flags.get("csrf"):
        return render_template("error.html", lang=language(), code="login_required",
                               message=explain("login_required", language())), 403
    secret, _opening = OpeningStore(current()).create(session.account_id)
    response = redirect("/account/history")
    set_cookie(response, HISTORY_COOKIE, secret, int(current().config.login_ttl.total_seconds()))
    return response


@blueprint.get("/account/history")
def waiting_page():
    services = current()
    opening = OpeningStore(services).of_browser(read_cookie(HISTORY_COOKIE))
    if _session() is None or opening is None:
        return redirect("/account")
    url = f"{services.config.issuer}/api/history/{opening.handle}"
    qr = segno.make(url, error="m").svg_inline(scale=4, dark="#1a1a1a")
    dev_command = None
    if services.config.dev_card:
        dev_command = f".venv/bin/python -m nfc_bridge history {url} --reader virtual --card {services.config.dev_card}"
    return render_template("history.html", lang=language(), opening=opening, qr=qr, url=url,
                           command=f"python -m nfc_bridge history {url} --reader usb", dev_command=dev_command)


@blueprint.get("/account/history/status")
def opening_status():
    opening = OpeningStore(current()).of_browser(read_cookie(HISTORY_COOKIE))
    if opening is None:
        body = {"state": "failed", "error": "login_not_found", "message": explain("login_not_found", language())}
    else:
        body = {"state": opening.state}
        if opening.error:
            body |= {"error": opening.error, "message": explain(opening.error, language())}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def forget_opening(response) -> None:
    """The page view that used (or could not use) the opening drops its cookies."""
    clear_cookie(response, HISTORY_COOKIE)


# --- the bridge's side -----------------------------------------------------------------------------------------


@blueprint.errorhandler(LoginError)
def _refused(error: LoginError):
    log.info("history api refused", extra={"code": error.code})
    return error_response(error.code, error.status)


@blueprint.get("/api/history/<handle>")
def fetch(handle: str):
    """The bridge's one fetch. A browser's navigation (a phone's camera opened the QR code) spends nothing: it is
    told, in a page, to open the link in the app or run the command, and the handle stays good for them."""
    if prefers_page():
        response = make_response(render_template("error.html", lang=language(), code="history_link_in_browser",
                                                 message=explain("history_link_in_browser", language())), 406)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Accept"
        return response
    services = current()
    opening, token = OpeningStore(services).fetch(handle)
    response = jsonify(purpose=PURPOSE, origin=services.config.origin, short_code=opening.short_code,
                       submit_url=f"{services.config.issuer}/api/history/submit", submit_token=token)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/api/history/submit")
def submit():
    body = request.get_json(silent=True)
    fields = ("submit_token", "token_type", "certificate", "signature")
    if (not request.is_json or not isinstance(body, dict) or set(body) - set(fields)
            or any(not isinstance(body.get(f), str) or len(body[f]) > MAX_FIELD for f in fields)):
        return error_response("proof_malformed", 400)
    store = OpeningStore(current())
    digest, opening = store.claim(body["submit_token"])
    try:
        sealed = _verify(opening, body)
    except (VerificationError, LoginError) as error:
        store.finish(digest, opening, error=error.code)
        log.info("access record opening refused", extra={"code": error.code})
        status = error.status if isinstance(error, LoginError) else STATUS_OF[error.code]
        return error_response(error.code, status)
    store.finish(digest, opening, sealed=sealed)
    log.info("access record opening verified", extra={"code": "ok"})
    return jsonify(result="ok", message="Your access record is open. Return to your browser to see it.",
                   message_ja="提供の記録を開きました。ブラウザに戻ってご覧ください。")


def _verify(opening: Opening, body: dict) -> str:
    services = current()
    token_type = body["token_type"] if body["token_type"] in TOKEN_TYPES else None
    try:
        certificate, signature = _b64decode(body["certificate"]), _b64decode(body["signature"])
    except (binascii.Error, ValueError):
        raise VerificationError("proof_malformed", "The card's answer is not base64url.") from None
    verified = services.verifier.verify_history(certificate, signature, services.config.origin,
                                                token_type=token_type)
    serial = verified.certificate.serial
    mapped = checked_record_and_mapping(services, verified.issuer, serial)
    if mapped != opening.account_id:
        raise LoginError("history_other_card",
                         "This card is not the one of the account that asked; log in with it first.", 403)
    payload = {"account_id": opening.account_id, "key": encode_key(holder_key(signature)),
               "cert": services.mykey.certificate_digest(verified.issuer, serial),
               "renewed_on": verified.certificate.not_before.date().isoformat()}
    browser = X25519PublicKey.from_public_bytes(_b64decode(opening.browser_key))
    return _b64(SUITE.encrypt(json.dumps(payload).encode(), browser, info=_SEALED_INFO))
