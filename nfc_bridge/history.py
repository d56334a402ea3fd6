"""The card side of opening the holder's access record: a signature that is the key to it, never a login.

The platform keeps the holder's access record sealed to a key made from the card's signature over one fixed message
that names the platform (jpki.signature.history_message; mykey/record.py says why). That signature *is* the key, so
the bridge makes it only here — in `python -m nfc_bridge history`, after saying plainly that it opens the access
record and that no website receives anything — and only for the service the link came from. A login can never
obtain it: a login's message is 64 octets and this one is not, and `login.fetch_login` refuses any challenge that
carries the history label (jpki.signature.is_history_bait).

The same PIN safety as a login (nfc_bridge/client.py), the same bounded, untrusting reads of the service's answers
(nfc_bridge/login.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from jpki.signature import history_message
from nfc_bridge.client import JpkiClient
from nfc_bridge.login import AskPin, Confirm, LoginFailed, Say, _b64e, _http, _origin, auth_signature
from nfc_bridge.transports import Transport

PURPOSE = "access_record"


@dataclass(frozen=True)
class HistoryRequest:
    origin: str
    short_code: str
    submit_url: str
    submit_token: str


def history_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or "/api/history/" not in url:
        raise LoginFailed("bad_history_link", "This is not a link for opening an access record (…/api/history/…).")
    return url


def fetch_history(url: str) -> HistoryRequest:
    answer = _http(history_url(url))
    try:
        request = HistoryRequest(origin=str(answer["origin"]), short_code=str(answer["short_code"]),
                                 submit_url=str(answer["submit_url"]), submit_token=str(answer["submit_token"]))
        purpose = answer["purpose"]
    except (KeyError, TypeError) as exc:
        raise LoginFailed("bad_login_answer", "The service's answer was not understood.") from exc
    if purpose != PURPOSE or not re.fullmatch(r"[0-9]{4}", request.short_code):
        raise LoginFailed("bad_login_answer", "The service's answer was not understood.")
    # The key is bound to the origin in the message, and the signature goes back only to where the link came from.
    if _origin(request.submit_url) != _origin(url) or request.origin != _origin(url):
        raise LoginFailed("origin_mismatch", "The service named another site to send the signature to.")
    return request


def answer_history(request: HistoryRequest, open_transport: Callable[[], Transport], ask_pin: AskPin,
                   confirm_last_try: Confirm, say: Say) -> dict:
    """Sign the history message with the auth key (after its PIN) and post it with the certificate."""
    say("Waiting for the card…")
    with open_transport() as transport:
        card = JpkiClient.connect(transport)
        certificate, signature = auth_signature(card, history_message(request.origin), ask_pin, confirm_last_try,
                                                say, "Signing the key to your access record…")
    say("Sending…")
    return _http(request.submit_url, {"submit_token": request.submit_token,
                                      "token_type": "smartphone" if card.is_smartphone else "card",
                                      "certificate": _b64e(certificate), "signature": _b64e(signature)})
