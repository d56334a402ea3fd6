"""The signals flow as people meet it, in headless Chromium: a holder logs in at Example Shop, an operator revokes
the card in the revocation service's console, and Example Shop's page shows the holder logged out by itself —
through the IdP's signals worker, an SSF push of a CAEP session-revoked event, and the demo RP verifying it.

Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import dataclasses

import pytest

from demo_rp.app import create_app as create_demo_rp
from devstack.http import LiveServer
from devstack.processes import free_port
from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.idp_flow import bridge_login
from tests.signals_flow import WorkerThread
from tests.test_browser import ARTIFACTS, chromium, dev_command_handle  # noqa: F401 - the fixture


@pytest.fixture
def subscribed_shop(idp_service):
    """Example Shop with a back-channel logout URI, subscribed to the IdP's SSF stream as it does on first run."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client, secret = idp_service.services.clients.add("Example Shop", [f"{base}/callback"],
                                                      post_logout_redirect_uris=[f"{base}/"],
                                                      backchannel_logout_uri=f"{base}/backchannel-logout")
    app = create_demo_rp(idp_service.url, client.client_id, secret, base)
    with LiveServer(app, port) as live:
        assert app.extensions["signals_receiver"].subscribed.wait(30), "Example Shop did not subscribe"
        yield live


@pytest.fixture
def insecure_console(revocation_config, idp_service):
    """The revocation service's operator console over plain http (its development cookie), on the same store."""
    from revocation.app import create_app

    services = idp_service.revocation.services
    config = dataclasses.replace(revocation_config, console_insecure_dev_cookies=True)
    with LiveServer(create_app(config, services)) as live:
        live.token = services.operators.add("olivia")
        yield live


def test_revoking_the_card_in_the_console_logs_the_holder_out_of_example_shop(
        chromium, idp_service, subscribed_shop, insecure_console, make_card):  # noqa: F811
    from idp.signals.service import EXTENSION

    card = make_card()
    idp_service.register_card(card)
    serial = parse_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH)).serial
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    holder = chromium.new_context(locale="en-US")
    operator = chromium.new_context(locale="en-US")
    shop = holder.new_page()
    console = operator.new_page()
    for page in (shop, console):
        page.set_default_timeout(20_000)
    signals = idp_service.server.app.extensions[EXTENSION]
    try:
        with WorkerThread(signals):
            shop.goto(subscribed_shop.url)
            shop.click("#login")
            shop.wait_for_url(f"{idp_service.url}/login")
            assert bridge_login(dev_command_handle(shop), card).returncode == 0
            shop.click("#approve")
            shop.wait_for_url(f"{subscribed_shop.url}/")
            assert shop.locator("#welcome").is_visible()
            shop.screenshot(path=str(ARTIFACTS / "signals-1-logged-in.png"))

            console.goto(f"{insecure_console.url}/operator/login")
            console.fill("#token", insecure_console.token)
            console.click("button[type=submit]")
            console.click("text=Certificate")
            console.fill("input[name=serial]", f"{serial:X}")
            console.click("text=Look up")
            console.fill("form.action:has(input[value=revoke]) textarea", "holder asked for revocation at the desk")
            console.click("form.action button:text('Revoke')")
            assert console.inner_text("[role=status]") == "Done."
            console.screenshot(path=str(ARTIFACTS / "signals-2-revoked.png"))

            # No action on the shop's page: it notices by itself.
            shop.wait_for_selector("#login")
            assert not shop.locator("#welcome").is_visible()
            shop.screenshot(path=str(ARTIFACTS / "signals-3-logged-out.png"))
    finally:
        holder.close()
        operator.close()
