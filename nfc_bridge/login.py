"""The card side of a login: fetch the transaction, show who asks, sign with the card, post the answer.

Steps are reported one by one (waiting for the card, reading, PIN, signing, sending) and the run ends with one
plain sentence. The PIN goes only to the card; what is posted is the certificate and the signature.

The login service is outside the bridge's trust: its answers are read bounded in size and time, decoded with
wire.json_input (depth, size and non-finite numbers refused), and must be JSON objects. Anything else — garbage,
a lie about the length, a broken connection — becomes a `LoginFailed` with a stable code, and whatever text the
service sends is shown only as printable characters of bounded length, so a hostile service cannot write
terminal escape sequences or a wall of text into the holder's terminal.
"""

from __future__ import annotations

import base64
import json
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from jpki.cades import signed_attributes, to_be_signed
from jpki.profile import CertificateKind
from jpki.signature import digest_fingerprint, is_history_bait, is_history_digest, login_message
from nfc_bridge.client import JpkiClient
from nfc_bridge.pin import LOCKED_SENTENCE
from nfc_bridge.transports import Transport
from wire.errors import CodedError
from wire.fetch import Fetcher, FetchFailed, FetchPolicy
from wire.json_input import JSONInputError
from wire.json_input import loads as json_loads

DEFAULT_IDP = os.environ.get("IDP_ISSUER", "http://127.0.0.1:8080")
HTTP_TIMEOUT = 15
MAX_RESPONSE = 64 * 1024  # a login answer is well under 4 KiB
MAX_SHOWN = 200  # characters of the service's own message that are shown
# http or https (the login link says which; docs/bridge-api.yaml), bounded in size and total time, no redirect
# (a login link names the service that signs the challenge; a hop elsewhere is refused), and the holder's own
# HTTP(S)_PROXY honoured: the bridge runs on the holder's computer, behind whatever proxy it needs.
_FETCHER = Fetcher(FetchPolicy(timeout=HTTP_TIMEOUT, max_bytes=MAX_RESPONSE, schemes=frozenset({"http", "https"}),
                               environment_proxy=True))
_CODE = re.compile(r"[a-z0-9_]{1,64}")
SHAREABLE = frozenset({"name", "address", "birthdate", "gender"})
MAX_DOCUMENTS = 10
HISTORY_REFUSED = ("This login asked the card to sign the key to your access record. Refused: nothing was signed. "
                   "Opening your access record is never part of a login.")


class LoginFailed(CodedError):
    """The login did not complete. `code` is the IdP's or the card's stable code."""


@dataclass(frozen=True)
class SigningDocument:
    label: str
    digest: bytes
    fingerprint: str

    def __repr__(self) -> str:
        return "SigningDocument(<redacted>)"


@dataclass(frozen=True)
class LoginRequest:
    rp_name: str
    short_code: str
    origin: str
    challenge: bytes
    signing_challenge: bytes | None
    share: list[str]
    submit_url: str
    submit_token: str
    documents: tuple[SigningDocument, ...] = ()  # documents the website asks the signing key to sign


def handle_url(url_or_handle: str, idp: str = DEFAULT_IDP) -> str:
    if url_or_handle.startswith(("http://", "https://")):
        return url_or_handle
    return f"{idp.rstrip('/')}/api/login/{url_or_handle}"


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def plain_text(value: object, default: str) -> str:
    """Text from the login service as it may be shown: printable characters only, whitespace collapsed, at most
    MAX_SHOWN characters; `default` when there is none."""
    if not isinstance(value, str):
        return default
    printable = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in value[: MAX_SHOWN * 4])
    text = " ".join(printable.split())
    if len(text) > MAX_SHOWN:
        text = text[: MAX_SHOWN - 1].rstrip() + "…"
    return text or default


def _http(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    try:
        answer = _FETCHER.fetch(url, data, "application/json" if data else None, accept="application/json")
    except FetchFailed as failed:
        raise _failure(failed) from None
    return _json_object(answer.body)


def _json_object(body: bytes) -> dict:
    try:
        answer = json_loads(body, max_bytes=MAX_RESPONSE)
    except JSONInputError:
        raise LoginFailed("bad_login_answer", "The login service's answer was not JSON.") from None
    if not isinstance(answer, dict):
        raise LoginFailed("bad_login_answer", "The login service's answer was not a JSON object.")
    return answer


def _failure(failed: FetchFailed) -> LoginFailed:
    """One sentence for what went wrong; for an HTTP refusal, the service's own (docs/bridge-api.yaml: `error`
    and `message`), or a plain one when it sent none."""
    if failed.reason == "url_not_allowed":
        return LoginFailed("bad_login_link", "The login link must start with https:// (or http:// on this computer).")
    if failed.reason == "too_large":
        return LoginFailed("bad_login_answer", "The login service's answer was larger than any login answer.")
    if failed.reason == "timeout":
        return LoginFailed("idp_unreachable", "The login service answered too slowly.")
    if failed.reason != "http_status":
        return LoginFailed("idp_unreachable", "The login service could not be reached or did not answer in HTTP.")
    status = failed.answer.status
    try:
        answer = _json_object(failed.answer.body)
    except LoginFailed:
        answer = {}
    code = answer.get("error")
    return LoginFailed(code if isinstance(code, str) and _CODE.fullmatch(code) else f"http_{status}",
                       plain_text(answer.get("message"), f"The login service answered HTTP {status}."))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def fetch_login(url: str) -> LoginRequest:
    answer = _http(url)
    try:
        request = LoginRequest(
            rp_name=str(answer["rp_name"]), short_code=str(answer["short_code"]), origin=str(answer["origin"]),
            challenge=_b64d(answer["challenge"]),
            signing_challenge=_b64d(answer["signing_challenge"]) if answer.get("signing_challenge") else None,
            share=list(answer.get("share") or []), submit_url=str(answer["submit_url"]),
            submit_token=str(answer["submit_token"]),
            documents=_documents(answer.get("signing")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LoginFailed("bad_login_answer", "The login service's answer was not understood.") from exc
    # What is shown to the holder must be what docs/bridge-api.yaml allows: no escape sequences in a name, a
    # four-digit check code, claim names from the list.
    if (not request.rp_name or request.rp_name != plain_text(request.rp_name, "")
            or not re.fullmatch(r"[0-9]{4}", request.short_code) or not set(request.share) <= SHAREABLE):
        raise LoginFailed("bad_login_answer", "The login service's answer was not understood.")
    # The signature goes back only to the service the link came from, and is bound to that origin.
    if _origin(request.submit_url) != _origin(url) or request.origin != _origin(url):
        raise LoginFailed("origin_mismatch", "The login service named another site to send the signature to.")
    # A login never signs anything tied to the key of the holder's access record (nfc_bridge/history.py), neither
    # as a challenge nor as a document's digest (jpki/signature.py says why the latter could open nothing anyway).
    if any(challenge is not None and is_history_bait(request.origin, challenge)
           for challenge in (request.challenge, request.signing_challenge)) \
            or any(is_history_digest(request.origin, document.digest) for document in request.documents):
        raise LoginFailed("history_signature_refused", HISTORY_REFUSED)
    return request


def _documents(signing: object) -> tuple[SigningDocument, ...]:
    """The documents to sign, if any (idp/signing/flow.py `fetch_fields`): each label shown as plain text, each
    fingerprint recomputed here from the digest the card will sign, so what the holder reads is what is signed."""
    if signing is None:
        return ()
    if not isinstance(signing, dict) or signing.get("receives") != "signing_certificate":
        raise ValueError("signing request not understood")
    entries = signing.get("documents")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DOCUMENTS:
        raise ValueError("signing request not understood")
    documents = []
    for entry in entries:
        digest = base64.b64decode(entry["hash"], validate=True)
        label = entry["label"]
        if len(digest) != 32 or not isinstance(label, str) or not label or label != plain_text(label, ""):
            raise ValueError("signing request not understood")
        documents.append(SigningDocument(label, digest, digest_fingerprint(digest)))
    return tuple(documents)


AskPin = Callable[[CertificateKind, int], str]
Confirm = Callable[[], bool]
Say = Callable[[str], None]


def answer_login(login: LoginRequest, open_transport: Callable[[], Transport], ask_pin: AskPin,
                 confirm_last_try: Confirm, say: Say, approve_signing: Confirm | None = None) -> dict:
    """Do the card part and post it. Returns the IdP's answer; raises LoginFailed or a CardError.

    When the website asks for documents to be signed, `approve_signing` is asked (after the documents were shown,
    by the caller) before any PIN: no means `signing_declined` is told to the login service and nothing is signed;
    a locked signing PIN means `signing_pin_locked`. One signing PIN entry covers the whole batch (and the basic
    facts, when they are asked for too)."""
    if login.documents and not (approve_signing and approve_signing()):
        _decline(login, "signing_declined")
        raise LoginFailed("signing_declined", "You declined to sign; nothing was signed or sent.")
    say("Waiting for the card…")
    with open_transport() as transport:
        card = JpkiClient.connect(transport)
        certificate, signature = auth_signature(card, login_message(login.origin, login.challenge), ask_pin,
                                                confirm_last_try, say, "Signing with the card…")
        body = {"submit_token": login.submit_token, "token_type": "smartphone" if card.is_smartphone else "card",
                "certificate": _b64e(certificate), "signature": _b64e(signature)}
        if login.signing_challenge is not None:
            signing = CertificateKind.SIGNING
            say("The website asks for your basic facts: the signing PIN is needed.")
            card.verify_pin(signing, ask_pin(signing, card.pin_tries_left(signing)), confirm_last_try)
            body["signing_certificate"] = _b64e(card.read_certificate(signing))
            body["signing_signature"] = _b64e(card.sign(signing, login_message(login.origin, login.signing_challenge),
                                                        "", confirm_last_try))
        if login.documents:
            body |= _sign_documents(login, card, ask_pin, confirm_last_try, say)
    say("Sending the signature…")
    return _http(login.submit_url, body)


def auth_signature(card: JpkiClient, message: bytes, ask_pin: AskPin, confirm_last_try: Confirm, say: Say,
                   signing_words: str) -> tuple[bytes, bytes]:
    """The auth certificate and the auth key's signature over `message` (a login's, or the access record's history
    message), the auth PIN asked for once: before reading the certificate on a card that guards it with the PIN (a
    smartphone's), else just before signing."""
    auth = CertificateKind.AUTH
    if card.needs_pin_to_read(auth):
        say("Checking the PIN…")
        card.verify_pin(auth, ask_pin(auth, card.pin_tries_left(auth)), confirm_last_try)
    say("Reading the certificate…")
    certificate = card.read_certificate(auth)
    pin = None if card.needs_pin_to_read(auth) else ask_pin(auth, card.pin_tries_left(auth))
    say(signing_words)
    return certificate, card.sign(auth, message, pin or "", confirm_last_try)


def _sign_documents(login: LoginRequest, card: JpkiClient, ask_pin: AskPin, confirm_last_try: Confirm,
                    say: Say) -> dict:
    """The batch: one signing PIN entry (none if the facts already verified it), then one signature per document."""
    signing = CertificateKind.SIGNING
    if signing not in card.verified:
        tries = card.pin_tries_left(signing)
        if tries == 0:
            _decline(login, "signing_pin_locked")
            raise LoginFailed("signing_pin_locked", LOCKED_SENTENCE)
        say("The website asks you to sign: the signing PIN is needed.")
        card.verify_pin(signing, ask_pin(signing, tries), confirm_last_try)
    # Read after the PIN: the certificate goes into each document's signed attributes (jpki/cades.py), and the card
    # signs their digest. That digest is refused too if it were the history message's (jpki/signature.py): it
    # cannot be, short of a SHA-256 preimage, but what the card signs for a website is checked, not assumed.
    certificate = card.read_certificate(signing)
    attributes = [signed_attributes(document.digest, certificate) for document in login.documents]
    if any(is_history_digest(login.origin, to_be_signed(a)) for a in attributes):
        raise LoginFailed("history_signature_refused", HISTORY_REFUSED)
    say(f"Signing {len(login.documents)} document(s) with the card…")
    signatures = [_b64e(card.sign_digest(signing, to_be_signed(a), "", confirm_last_try)) for a in attributes]
    return {"signing_certificate": _b64e(certificate), "document_signatures": signatures,
            "document_signed_attributes": [_b64e(a) for a in attributes]}


def _decline(login: LoginRequest, reason: str) -> None:
    """Tell the login service that nothing will be signed (idp/signing/api.py); its answer changes nothing here."""
    url = f"{_origin(login.submit_url)}/api/signing/decline"
    try:
        _http(url, {"submit_token": login.submit_token, "reason": reason})
    except LoginFailed:
        pass
