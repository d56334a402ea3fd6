"""The sealed access record in headless Chromium (Debian's chromium, driven by Playwright, as tests/test_browser.py):
the holder logs in at the demo RP, opens the record from the account page, the real bridge signs the history message
with the virtual card, and the page shows the entries; a second browser, without the card, sees that sealed entries
exist and none of them. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import re

from tests.idp_flow import bridge_login
from tests.record_flow import bridge_history
from tests.test_browser import ARTIFACTS, chromium, dev_command_handle  # noqa: F401 - the fixture
from tests.test_demo_rp import demo_rp  # noqa: F401 - the fixture


def _page(browser, name: str):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.shoot = lambda step: page.screenshot(path=str(ARTIFACTS / f"history-{name}-{step}.png"), full_page=True)
    return context, page


def _log_in_at_the_account_page(page, idp_service, card) -> None:
    page.goto(f"{idp_service.url}/account?lang=en")
    page.wait_for_url(f"{idp_service.url}/login")
    assert bridge_login(dev_command_handle(page), card).returncode == 0
    page.wait_for_url(re.compile(r".*/account$"))


def _open_with_the_card(page, card) -> None:
    page.click("#open-history")
    page.wait_for_url(re.compile(r".*/account/history$"))
    assert "not a login" in page.inner_text("main")
    url = re.search(r"(http://\S+/api/history/\S+)", page.inner_text("#command")).group(1)
    run = bridge_history(url, card)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "NOT a login" in run.stdout
    page.wait_for_selector("#history")  # the waiting page noticed the card's answer by itself


def test_the_holder_opens_the_record_with_the_card_and_another_browser_sees_none(chromium, idp_service,  # noqa: F811
                                                                                 demo_rp, make_card):  # noqa: F811
    card = make_card()
    idp_service.register_card(card)
    context, page = _page(chromium, "holder")
    page.goto(demo_rp.url)
    page.click("#login")
    page.wait_for_url(f"{idp_service.url}/login")
    assert bridge_login(dev_command_handle(page), card).returncode == 0
    page.click("#approve")
    page.wait_for_url(f"{demo_rp.url}/")

    page.goto(f"{idp_service.url}/account?lang=en")
    assert page.locator("#history").count() == 0 and "Example Shop" not in page.inner_text("main")
    page.shoot("1-sealed")
    _open_with_the_card(page, card)
    assert "Example Shop" in page.inner_text("#history") and "Example Shop" in page.inner_text("#consents")
    page.shoot("2-opened")

    # Another browser, logged in with the same card but not opening the record, sees that entries exist, no more.
    other_context, other = _page(chromium, "other")
    _log_in_at_the_account_page(other, idp_service, card)
    assert other.locator("#history").count() == 0 and other.locator("#consents").count() == 0
    assert int(other.inner_text("#sealed-count")) >= 2 and "Example Shop" not in other.content()
    other.shoot("1-sealed")
    other_context.close()

    # Withdrawing a consent works from the opened view; the record is closed again after it.
    page.click("#consents button")
    page.wait_for_url(re.compile(r".*/account\?notice=withdrawn"))
    assert page.locator("#history").count() == 0
    _open_with_the_card(page, card)
    assert page.locator("#consents td").count() == 0 and "Example Shop" in page.inner_text("#history")
    page.shoot("3-withdrawn")
    context.close()
