"""In Chromium: Example Shop offers "sign this contract", the holder signs with the virtual card through the bridge,
and the page offers the signed PDF for download — a PAdES B-LT file pyHanko's validator calls intact and trusted,
time-stamped by the development TSA, with the revocation proofs inside it. Screenshots land in
test-artifacts/browser/."""

from __future__ import annotations

import pytest

from demo_rp.app import create_app
from devstack.http import LiveServer
from devstack.processes import free_port
from tests.conftest import SIGN_PIN
from tests.idp_flow import bridge_login
from tests.test_browser import chromium, dev_command_handle, page  # noqa: F401 - the fixtures
from tests.test_pades import tsa  # noqa: F401 - the fixture


@pytest.fixture
def demo_rp(idp_service, tsa):  # noqa: F811
    """Example Shop as tests/test_demo_rp.py serves it, time-stamping with the development TSA."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client, secret = idp_service.services.clients.add("Example Shop", [f"{base}/callback"],
                                                      post_logout_redirect_uris=[f"{base}/"])
    with LiveServer(create_app(idp_service.url, client.client_id, secret, base, tsa_url=f"{tsa.url}/tsa"),
                    port) as live:
        yield live


def test_sign_the_contract_at_example_shop_and_download_it(page, idp_service, demo_rp, make_card, dev_ca,  # noqa: F811
                                                           tsa):  # noqa: F811
    from demo_rp.pades import validate

    card = make_card()
    idp_service.register_card(card)
    page.goto(f"{demo_rp.url}/contract")
    page.shoot("1-contract")
    page.click("#sign")
    page.wait_for_url(f"{idp_service.url}/login")
    documents = page.inner_text("#signing-documents")
    assert "Example Shop sales contract" in documents
    assert "date of birth" in page.inner_text("#signing-request")
    page.shoot("2-login-page-with-document")
    run = bridge_login(dev_command_handle(page), card, pins=f"1234\n{SIGN_PIN}\n", extra=["--approve-signing"])
    assert run.returncode == 0, run.stdout + run.stderr
    page.wait_for_selector("#approve")
    page.click("#approve")
    page.wait_for_selector("#download")
    page.shoot("3-signed")
    with page.expect_download() as download:
        page.click("#download")
    pdf = open(download.value.path(), "rb").read()
    assert pdf.startswith(b"%PDF") and download.value.suggested_filename == "contract-signed.pdf"
    report = validate(pdf, [dev_ca.signing.certificate], [tsa.authority.root])
    assert report.intact and report.trusted and report.revocation_embedded and report.level == "B-LT"


def test_declining_at_the_bridge_brings_the_browser_back_with_access_denied(page, idp_service, demo_rp,  # noqa: F811
                                                                              make_card):
    card = make_card()
    idp_service.register_card(card)
    page.goto(f"{demo_rp.url}/contract")
    page.click("#sign")
    page.wait_for_url(f"{idp_service.url}/login")
    # No --approve-signing and no terminal to type SIGN at: the bridge declines, and signs nothing.
    run = bridge_login(dev_command_handle(page), card, pins=f"1234\n{SIGN_PIN}\n")
    assert run.returncode != 0 and "declined" in (run.stdout + run.stderr)
    page.wait_for_selector("#error")  # the login page continued by itself to the shop, which shows the answer
    assert "access_denied" in page.inner_text("#error")
    page.shoot("declined")
