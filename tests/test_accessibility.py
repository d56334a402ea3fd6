"""Accessibility of every page people see, checked by axe-core inside headless Chromium.

Design: axe-core is the npm package pinned exactly in tests/node/package.json and package-lock.json (the same
package tree that holds openid-client for tests/test_node_example.py, installed the same way: `npm ci` from the
lock file, cache under the repository). Its `axe.min.js` is injected into each page with Playwright's
`add_script_tag` and `axe.run()` is evaluated there, so the check sees the page as a browser renders it (styles,
contrast, the live region the login script updates). A page fails on any violation whose impact is `serious` or
`critical`; the assertion names each rule, its impact and the offending selectors. Node or npm missing, or an
install that fails, is a failure, never a skip: a run without this check must not pass for a full one.

Pages: the holder's login (with its check code), consent, account, logged-out and error pages in Japanese and
English; the operator console (login, dashboard, certificate lookup, audit, the IdP's client list, a refused
login). Each is checked at a desktop size and at a phone size (390x844); screenshots of both land in
test-artifacts/accessibility/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.idp_flow import bridge_login
from tests.record_flow import bridge_history
from tests.test_browser import chromium, dev_command_handle  # noqa: F401 - the fixture
from tests.test_demo_rp import demo_rp  # noqa: F401 - the fixture
from tests.test_operator_console import console  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "node"
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "accessibility"
FAILING_IMPACTS = ("serious", "critical")
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def axe_script() -> Path:
    """axe.min.js at the version the lock file pins, installed with `npm ci` when it is not there yet."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/axe-core"]["version"]
    installed = NODE_DIR / "node_modules" / "axe-core" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is required to install axe-core for the accessibility tests (scripts/bootstrap.sh "
                        "installs Node.js with npm)", pytrace=False)
        result = subprocess.run([npm, "ci", "--cache", str(ROOT / ".npm-cache"), "--no-audit", "--no-fund"],
                                cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"npm ci failed:\n{result.stderr[-2000:]}"
    assert AXE.exists(), f"{AXE} is missing after npm ci"
    return AXE


def axe_violations(page, axe_script: Path) -> list[dict]:
    """The serious and critical violations axe-core finds in the page as it stands."""
    page.add_script_tag(path=str(axe_script))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in results["violations"] if v.get("impact") in FAILING_IMPACTS]


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        targets = ", ".join(" ".join(map(str, node["target"])) for node in violation["nodes"])
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} — at {targets}")
    return "\n".join(lines)


class Checker:
    """One browser context at one size and language; `check` runs axe on the current page and keeps a screenshot."""

    def __init__(self, page, axe_script: Path, prefix: str):
        self.page, self.axe_script, self.prefix = page, axe_script, prefix

    def check(self, name: str) -> None:
        self.page.wait_for_load_state("load")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.prefix}-{name}.png"), full_page=True)
        violations = axe_violations(self.page, self.axe_script)
        assert not violations, f"axe-core on {name} ({self.prefix}):\n{describe(violations)}"

    def fits_the_width(self) -> bool:
        """Nothing on the page makes it scroll sideways (a phone user reads it top to bottom)."""
        return self.page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request) -> str:
    return request.param


def open_checker(chromium, axe_script, lang: str, viewport: str, what: str):  # noqa: F811
    context = chromium.new_context(locale="ja-JP" if lang == "ja" else "en-US", viewport=VIEWPORTS[viewport],
                                   is_mobile=viewport == "phone", has_touch=viewport == "phone",
                                   # The pages' Content-Security-Policy forbids injected scripts, rightly; the
                                   # test browser alone sets it aside so that axe can run inside the page.
                                   bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, Checker(page, axe_script, f"{what}-{lang}-{viewport}")


def open_login_from_the_demo_rp(page, rp_url: str, idp_url: str, lang: str) -> None:
    """Start a login at the demo RP and show the IdP's login page in `lang`."""
    page.goto(rp_url)
    page.click("#login")
    page.wait_for_url(f"{idp_url}/login")
    page.goto(f"{idp_url}/login?lang={lang}")


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_holder_pages_have_no_serious_accessibility_violations(chromium, axe_script, viewport, lang,  # noqa: F811
                                                               idp_service, demo_rp, make_card):  # noqa: F811
    card = make_card()
    idp_service.register_card(card)
    context, checker = open_checker(chromium, axe_script, lang, viewport, "holder")
    page = checker.page
    try:
        open_login_from_the_demo_rp(page, demo_rp.url, idp_service.url, lang)
        assert page.get_attribute("html", "lang") == lang
        # The check code is what the holder compares with the card side: it is named, not a bare number.
        code = page.locator("#short-code")
        assert code.get_attribute("aria-describedby") or code.get_attribute("aria-labelledby")
        checker.check("1-login")
        assert checker.fits_the_width()
        handle_url = dev_command_handle(page)
        page.goto(f"{handle_url}?lang={lang}")  # what a phone's camera opens from the QR code (spends nothing)
        assert page.get_attribute("html", "lang") == lang
        checker.check("1-handle")
        assert checker.fits_the_width()
        page.goto(f"{idp_service.url}/login?lang={lang}")
        assert bridge_login(handle_url, card).returncode == 0
        page.wait_for_selector("#approve")
        checker.check("2-consent")
        assert checker.fits_the_width()
        page.click("#approve")
        page.wait_for_url(f"{demo_rp.url}/")
        page.goto(f"{idp_service.url}/account?lang={lang}")
        checker.check("3-account")
        assert checker.fits_the_width()
        page.click("#open-history")  # the sealed access record: the waiting page, then the record opened once
        page.wait_for_url(f"{idp_service.url}/account/history")
        checker.check("3-history-waiting")
        assert checker.fits_the_width()
        history_url = re.search(r"(http://\S+/api/history/\S+)", page.inner_text("#command")).group(1)
        assert bridge_history(history_url, card).returncode == 0
        page.wait_for_selector("#history")
        checker.check("3-account-opened")
        assert checker.fits_the_width()
        page.goto(f"{idp_service.url}/account?lang={lang}&notice=withdrawn")
        checker.check("4-account-notice")
        page.goto(f"{idp_service.url}/logout?lang={lang}")
        checker.check("5-logged-out")
        page.context.clear_cookies()
        page.goto(f"{idp_service.url}/login?lang={lang}")  # no login under way: the error page
        assert page.locator("#error").is_visible()
        checker.check("6-error")
        assert checker.fits_the_width()
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_a_failed_login_is_announced_without_serious_violations(chromium, axe_script, viewport, lang,  # noqa: F811
                                                                 idp_service, demo_rp, make_card):  # noqa: F811
    card = make_card()  # never registered: the login fails and the login page says why in its live region
    context, checker = open_checker(chromium, axe_script, lang, viewport, "failed-login")
    page = checker.page
    try:
        open_login_from_the_demo_rp(page, demo_rp.url, idp_service.url, lang)
        bridge_login(dev_command_handle(page), card)
        status = page.wait_for_selector("#status.error")
        assert status.get_attribute("role") == "status" or status.get_attribute("aria-live") in ("polite", "assertive")
        checker.check("login-error")
    finally:
        context.close()


def test_operator_console_pages_have_no_serious_accessibility_violations(chromium, axe_script, viewport,  # noqa: F811
                                                                        console, issue_card):  # noqa: F811
    card = issue_card()
    context, checker = open_checker(chromium, axe_script, "en", viewport, "operator")
    page = checker.page
    try:
        page.goto(f"{console.url}/operator/login")
        page.fill("#token", "rvop_not-a-token")
        page.click("button[type=submit]")
        checker.check("1-login-refused")
        page.fill("#token", console.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{console.url}/operator/")
        checker.check("2-dashboard")
        page.click("text=Certificate")
        checker.check("3-certificate-form")
        page.fill("input[name=serial]", f"{card['auth'].serial_number:X}")
        page.click("text=Look up")
        page.wait_for_selector("form.action")
        checker.check("4-certificate")
        page.click("text=Audit")
        checker.check("5-audit")
    finally:
        context.close()


def test_idp_operator_client_list_has_no_serious_accessibility_violations(chromium, axe_script,  # noqa: F811
                                                                         viewport, idp_service):
    token = idp_service.revocation.services.operators.add("amy")
    idp_service.services.clients.add("Accessible Shop", ["https://shop.example.jp/cb"])
    context, checker = open_checker(chromium, axe_script, "en", viewport, "idp-operator")
    page = checker.page
    try:
        page.goto(f"{idp_service.url}/operator/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.goto(f"{idp_service.url}/operator/clients")
        assert "Accessible Shop" in page.inner_text("#clients")
        checker.check("clients")
    finally:
        context.close()


def test_a_holder_logs_in_and_allows_by_keyboard_alone(chromium, axe_script, idp_service, demo_rp,  # noqa: F811
                                                       make_card):
    card = make_card()
    idp_service.register_card(card)
    context, checker = open_checker(chromium, axe_script, "en", "desktop", "keyboard")
    page = checker.page
    try:
        page.goto(demo_rp.url)
        page.click("#login")
        page.wait_for_url(f"{idp_service.url}/login")
        bridge_login(dev_command_handle(page), card)
        page.wait_for_selector("#approve")
        for _ in range(20):  # Tab through the page until the Allow button has the focus, then press Enter
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement && document.activeElement.id") == "approve":
                break
        else:
            pytest.fail("the Allow button cannot be reached with Tab")
        checker.check("consent-focused")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{demo_rp.url}/")
        assert page.locator("#welcome").is_visible()
    finally:
        context.close()
