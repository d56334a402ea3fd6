"""The bridge CLI at a real terminal when a website asks for documents to be signed: the documents are shown, SIGN
typed by the holder signs them with one signing PIN, anything else declines, and `--pin-stdin` never asks."""

from __future__ import annotations

import hashlib

import pytest

from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.conftest import SIGN_PIN
from tests.idp_flow import Browser
from tests.test_bridge_cli_pty import at_a_terminal
from tests.test_document_signing import REDIRECT, authorize_url, details

DOCUMENT = ("Loan agreement", hashlib.sha256(b"loan").digest())


@pytest.fixture
def handle_url(idp_service):
    client, _ = idp_service.services.clients.add("Example Bank", [REDIRECT])
    url, _ = authorize_url(idp_service, client.client_id, details(DOCUMENT))
    return Browser(idp_service.url).start(url)


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    return path


def test_typing_sign_signs_with_one_signing_pin(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card],
                                  answers=(("Type SIGN", "SIGN\n"), ("Enter your", "1234\n"),
                                           ("Enter your signing PIN", f"{SIGN_PIN}\n")))
    assert status == 0 and "Done:" in shown, shown
    assert "Loan agreement" in shown and DOCUMENT[1][:2].hex().upper() in shown
    assert "date of birth" in shown
    assert SIGN_PIN not in shown


def test_anything_but_sign_declines_before_the_card_is_touched(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card],
                                  answers=(("Type SIGN", "yes\n"),))
    assert status == 1 and "signing_declined" in shown, shown
    assert "Enter your" not in shown
    assert VirtualCard.load(card).tries_left(CertificateKind.SIGNING) == 5


def test_pin_stdin_never_asks_and_declines_without_approve_signing(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card, "--pin-stdin"],
                                  typed=f"1234\n{SIGN_PIN}\nSIGN\n")
    assert status == 1 and "signing_declined" in shown and "Type SIGN" not in shown, shown
