"""Browser end to end in headless Chromium (Debian's chromium, driven by Playwright): what a cardholder sees.

Screenshots of every step land in test-artifacts/browser/.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

import pytest

from revocation.domain.events import parse_event
from tests.idp_flow import bridge_login
from tests.test_demo_rp import demo_rp  # noqa: F401 - the fixture
from tests.test_operator_console import console  # noqa: F401 - the fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def chromium():
    # scripts/bootstrap.sh installs chromium for `make test`: without it the install is broken, and the browser
    # tests fail rather than skip, so that a run without them cannot pass for a full one.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing ({CHROMIUM}): scripts/bootstrap.sh installs it", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # This machine's network is closed: keep Chromium from reaching for Google's services.
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request):
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.shoot = lambda name: page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{name}.png"), full_page=True)
    yield page
    context.close()


def dev_command_handle(page) -> str:
    return re.search(r"(http://\S+/api/login/\S+)", page.inner_text("#command")).group(1)


def test_log_in_at_the_demo_rp_with_the_virtual_card(page, idp_service, demo_rp, make_card):  # noqa: F811
    card = make_card()
    idp_service.register_card(card)
    page.goto(demo_rp.url)
    page.shoot("1-rp")
    page.click("#login")
    page.wait_for_url(f"{idp_service.url}/login")
    assert page.locator("#qr svg").is_visible()
    assert re.fullmatch(r"\d{4}", page.inner_text("#short-code"))
    page.shoot("2-login-page")
    assert bridge_login(dev_command_handle(page), card).returncode == 0
    page.wait_for_selector("#approve")  # the page noticed the card's answer by itself
    page.shoot("3-consent")
    page.click("#approve")
    page.wait_for_url(f"{demo_rp.url}/")
    assert page.locator("#welcome").is_visible() and '"acr": "aal3"' in page.inner_text("#claims")
    page.shoot("4-logged-in")


def test_a_revoked_card_gets_an_explained_error_on_the_login_page(page, idp_service, demo_rp, make_card):  # noqa: F811
    card = make_card()
    registered = idp_service.register_card(card)
    idp_service.revocation.services.applier.apply(parse_event({
        "event_id": f"ret-{secrets.token_hex(3)}x", "type": "card_returned", "holder": registered["holder"],
        "occurred_at": "2026-02-01T00:00:00Z", "source": "test", "card_id": registered["card_id"]}))
    page.goto(demo_rp.url)
    page.click("#login")
    page.wait_for_url(f"{idp_service.url}/login")
    assert bridge_login(dev_command_handle(page), card).returncode == 1
    status = page.wait_for_selector("#status.error")
    assert status.get_attribute("data-code") == "certificate_revoked"
    assert "revoked" in status.inner_text()
    page.shoot("error")


@pytest.mark.parametrize(("lang", "heading"), [("ja", "にログイン"), ("en", "Log in to")])
def test_the_login_page_speaks_both_languages(page, idp_service, demo_rp, lang, heading):  # noqa: F811
    page.goto(demo_rp.url)
    page.click("#login")
    page.wait_for_url(f"{idp_service.url}/login")
    page.goto(f"{idp_service.url}/login?lang={lang}")
    assert heading in page.inner_text("h1")
    page.shoot(lang)


def test_operator_console_login_lookup_and_hold(page, console, issue_card):  # noqa: F811
    card = issue_card()
    page.goto(f"{console.url}/operator/")
    page.wait_for_url(f"{console.url}/operator/login")
    page.fill("#token", console.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console.url}/operator/")
    assert page.get_by_role("heading", name="Event stream").is_visible()
    page.shoot("1-dashboard")
    page.click("text=Certificate")
    page.fill("input[name=serial]", f"{card['auth'].serial_number:X}")
    page.click("text=Look up")
    page.fill("form.action:has(input[value=hold]) textarea", "holder reported the card missing by phone")
    page.click("form.action button:text('Hold')")
    assert page.inner_text("[role=status]") == "Done."
    assert "on hold" in page.inner_text("table")
    page.shoot("2-held")
