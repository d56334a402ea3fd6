"""Document signing: card-signed document batches verified and packaged per second at the bridge API's submit,
next to plain card logins on the same stack.

    .venv/bin/python -m bench signing

The stack of bench/login.py (redis-server, the revocation service and the IdP, each under `gunicorn -w 2`, on
loopback) and its 32 virtual cards. Before the clock starts, login transactions carrying a signing request of
DOCUMENTS digests (what /authorize stores after idp/signing/details.py accepted them) are created and fetched with
the IdP's own LoginStore, and each card signs, through its APDUs, the login challenge with the auth key and, for
every document, the digest of the CMS signed attributes built around it as the bridge builds them (jpki/cades.py)
with the signing key (one signing PIN verification per card, then one SIGN per digest) — valid
signatures prepared beforehand, as the login bench does.

Timed: the submit. Each one runs the login pipeline and then the signing one (idp/signing/verification.py): the
signing certificate's policy, key usage, chain, validity, per document its signed attributes decoded and checked
and one RSA-2048 verify, an OCSP request kept as
evidence, the status store's record for the 紐付け check, and the package sealed and stored for the code exchange.
The peer is the plain login on the same stack and wrk settings (bench/login.py's body, no signing request).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path

from bench.harness import Result
from bench.login import (
    AUTH_PIN,
    MAX_TRANSACTIONS,
    SIGN_PIN,
    WARMUP_TRANSACTIONS,
    CardSigner,
    Stack,
    card_login_stack,
    issue_cards,
    prepare_submissions,
    sized_window,
    submit_load,
)
from idp.signing.details import Document, SigningRequest
from idp.signing.flow import start_fields
from jpki.cades import signed_attributes, to_be_signed
from jpki.profile import CertificateKind
from jpki.signature import login_message

DOCUMENTS = 3  # per signing request: a contract and its annexes


class SigningCard(CardSigner):
    """A card with both PINs verified once: signs login challenges and document digests."""

    def __init__(self, card_file: Path):
        super().__init__(card_file)
        self.client.verify_pin(CertificateKind.SIGNING, SIGN_PIN)
        self.signing_certificate = self.client.read_certificate(CertificateKind.SIGNING)

    def sign_digest(self, digest: bytes) -> bytes:
        return self.client.sign_digest(CertificateKind.SIGNING, digest, "")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def prepare_signings(stack: Stack, cards: list[SigningCard], count: int) -> list[bytes]:
    logins, origin = stack.idp.logins, stack.idp.config.origin
    bodies = []
    for index in range(count):
        request = SigningRequest(tuple(Document(f"Document {n + 1}", hashlib.sha256(secrets.token_bytes(16)).digest())
                                       for n in range(DOCUMENTS)))
        txn = logins.create(origin, "bench-rp", "Bench RP", "/authorize", [], wants_facts=False,
                            extra=start_fields(request))
        txn, submit_token = logins.fetch(txn.handle)
        card = cards[index % len(cards)]
        attributes = [signed_attributes(d.digest, card.signing_certificate) for d in request.documents]
        challenge = base64.urlsafe_b64decode(txn.challenge + "=" * (-len(txn.challenge) % 4))
        bodies.append(json.dumps({
            "submit_token": submit_token, "token_type": "card", "certificate": _b64(card.certificate),
            "signature": _b64(card.client.sign(CertificateKind.AUTH, login_message(origin, challenge), AUTH_PIN)),
            "signing_certificate": _b64(card.signing_certificate),
            "document_signatures": [_b64(card.sign_digest(to_be_signed(a))) for a in attributes],
            "document_signed_attributes": [_b64(a) for a in attributes],
        }).encode())
    return bodies


def run(workdir: Path) -> list[Result]:
    with card_login_stack(workdir) as stack:
        cards = [SigningCard(path) for path in issue_cards(stack)]
        ours = sized_window(lambda count: prepare_signings(stack, cards, count),
                            lambda bodies, seconds: submit_load(stack, bodies, seconds),
                            WARMUP_TRANSACTIONS // 4, MAX_TRANSACTIONS // 4)
        peer = sized_window(lambda count: prepare_submissions(stack, cards, count),
                            lambda bodies, seconds: submit_load(stack, bodies, seconds),
                            WARMUP_TRANSACTIONS, MAX_TRANSACTIONS)
    ours["signatures_per_s"] = round(ours["rps"] * DOCUMENTS, 1)
    return [Result(
        id="signing", title=f"Document signing: {DOCUMENTS}-document batches verified and packaged (bridge API submit)",
        figures={"ours": ours, "peer (plain login)": peer},
        ratio=round(ours["rps"] / peer["rps"], 3),
        ratio_meaning="signing submissions/s ÷ plain login submissions/s on the same stack",
        notes=[
            f"Each signing submission: the login pipeline, then {DOCUMENTS} documents' CMS signed attributes "
            "(decoded, each checked against its digest and the signing certificate) and signatures (RSA-2048 "
            "verify each), the signing certificate's checks and chain, a second OCSP request (its response is the "
            "evidence returned), the status store's record, the package sealed (AES-GCM) and stored: "
            f"{ours['signatures_per_s']:,.0f} signatures/s.",
            "Valid signatures prepared beforehand with the virtual cards' APDUs; transactions created and fetched "
            "with the IdP's LoginStore. Only verified submissions count (checked against the IdP's counter).",
            "Everything shares the 2 cores: wrk, 2 IdP workers, 2 revocation workers, Redis.",
        ])]
