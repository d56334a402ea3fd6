"""The pages a cardholder sees: login (QR code + bridge command, waiting), consent, account, errors; in
Japanese and English (`?lang=ja|en`, else the browser's Accept-Language).

Times and disclosures are said the way a holder reads them, not the way they are stored:

- Times are stored in UTC (mykey/consent.py) and shown in Japan time, the holder's time, in both languages:
  `2026年12月2日 9:35` and `2 December 2026, 9:35 (JST)`, inside a `<time datetime="…Z">` element that keeps the
  exact UTC instant for machines (the `when` filter). Japan time comes from the tz database (zoneinfo); a host
  without one fails at start rather than show a wrong hour. A time without a zone is refused, never guessed.
- What a relying party receives is said in words (`SHARED_WORDING`, the one place for that wording, English and
  Japanese): `openid` is the pairwise identifier made for that website alone (`sub`), and each basic fact's scope
  is the claim of the same name (idp/oidc/provider.py, `user_claims`). The `shared` filter makes the sentence
  for a table cell ("An identifier for this website; your name and address"), `shared_items` the list the consent
  page shows. A scope name without wording is said as "other information", never echoed as a raw name;
  tests/test_holder_pages_wording.py checks that every scope the IdP offers has both sentences.
- What an account action did is said in a sentence (`ACCOUNT_NOTICES`), never as its code; a refusal is announced
  as an alert, the rest as a status.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import segno
from flask import Blueprint, abort, jsonify, make_response, redirect, render_template, request
from markupsafe import Markup

from idp.holder.cookies import LOGIN_COOKIE, SESSION_COOKIE, clear_cookie, read_cookie, set_cookie
from idp.holder.history import forget_opening, open_for_view
from idp.holder.sessions import Session
from idp.login.bridge_api import STATUS_OF
from idp.login.messages import explain, language
from idp.login.transactions import LoginError
from idp.services import current
from idp.signals import sessions as signal_sessions
from idp.signals.service import current_signals
from idp.signing import flow as signing_flow
from idp.signing.api import declined_redirect
from mykey.directory import MyKeyIdError

blueprint = Blueprint("pages", __name__)

ACCOUNT_CLIENT = "mykey-account"  # the account page logs in like a relying party, with no code issued


# --- how times and disclosures are said ------------------------------------------------------------------

JAPAN = ZoneInfo("Asia/Tokyo")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")

IDENTIFIER_SCOPE = "openid"
# scope → (English, Japanese). openid: the pairwise `sub`; a fact's scope: the claim of that name, in the order of
# the basic four facts (氏名・住所・生年月日・性別). English facts are nouns, said after "your".
SHARED_WORDING: dict[str, tuple[str, str]] = {
    IDENTIFIER_SCOPE: ("an identifier for this website", "このサイト専用の識別子"),
    "name": ("name", "氏名"),
    "address": ("address", "住所"),
    "birthdate": ("date of birth", "生年月日"),
    "gender": ("gender", "性別"),
}
OTHER_WORDING = ("other information", "その他の情報")
NOTHING_WORDING = ("nothing", "なし")


def _say(wording: tuple[str, str], lang: str) -> str:
    english, japanese = wording
    return japanese if lang == "ja" else english


def local_time(moment: dt.datetime, lang: str) -> str:
    """`moment` in Japan time, as a holder writes it in `lang`."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("A time shown to a holder must carry its zone.")
    here = moment.astimezone(JAPAN)
    clock = f"{here.hour}:{here.minute:02d}"
    if lang == "ja":
        return f"{here.year}年{here.month}月{here.day}日 {clock}"
    return f"{here.day} {_MONTHS[here.month - 1]} {here.year}, {clock} ({here.tzname()})"


@blueprint.app_template_filter("when")
def when(moment: dt.datetime, lang: str) -> Markup:
    """A `<time>` element: Japan time in words for the holder, the exact UTC instant in its datetime attribute."""
    exact = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{}">{}</time>').format(exact, local_time(moment, lang))


def _groups(scopes: Iterable[str]) -> tuple[bool, list[str], bool]:
    """(the identifier, the facts in the wording's order, anything without wording) among `scopes`."""
    names = set(scopes)
    facts = [name for name in SHARED_WORDING if name in names and name != IDENTIFIER_SCOPE]
    return IDENTIFIER_SCOPE in names, facts, bool(names - SHARED_WORDING.keys())


@blueprint.app_template_filter("shared_items")
def shared_items(scopes: Iterable[str], lang: str) -> list[str]:
    """What `scopes` give a website, one item each: "Your name" / "氏名"."""
    identifier, facts, other = _groups(scopes)
    items = [_say(SHARED_WORDING[IDENTIFIER_SCOPE], lang)] if identifier else []
    items += [_say(SHARED_WORDING[name], lang) if lang == "ja" else f"your {SHARED_WORDING[name][0]}"
              for name in facts]
    items += [_say(OTHER_WORDING, lang)] if other else []
    return [item[:1].upper() + item[1:] for item in items]


@blueprint.app_template_filter("shared")
def shared(scopes: Iterable[str], lang: str) -> str:
    """What `scopes` give a website, as one phrase: "An identifier for this website; your name and address"."""
    identifier, facts, other = _groups(scopes)
    said = [SHARED_WORDING[name] for name in facts]
    if lang == "ja":
        parts = [_say(SHARED_WORDING[IDENTIFIER_SCOPE], lang)] if identifier else []
        parts += ["・".join(japanese for _, japanese in said)] if said else []
        parts += [_say(OTHER_WORDING, lang)] if other else []
        return "、".join(parts) or _say(NOTHING_WORDING, lang)
    nouns = [english for english, _ in said]
    parts = [SHARED_WORDING[IDENTIFIER_SCOPE][0]] if identifier else []
    if nouns:
        parts.append("your " + (nouns[0] if len(nouns) == 1 else f"{', '.join(nouns[:-1])} and {nouns[-1]}"))
    parts += [OTHER_WORDING[0]] if other else []
    phrase = "; ".join(parts) or NOTHING_WORDING[0]
    return phrase[:1].upper() + phrase[1:]


# --- what the account page says after an action ----------------------------------------------------------

# The account page's actions redirect to /account?notice=<code>; the page says the code's sentence (English,
# Japanese). A code not listed here shows nothing, so the page never repeats text from its own URL.
ACCOUNT_NOTICES: dict[str, tuple[str, str]] = {
    "withdrawn": ("You took back your consent. The next time you log in to that website, you will be asked again "
                  "before anything is shared with it.",
                  "同意を取り消しました。次にそのサイトでログインするときは、情報を提供する前に改めて確認します。"),
    "mykey_id_changed": ("Your MyKey ID is now the one shown above.",
                         "マイキーIDを上に表示しているものに変更しました。"),
    "mykey_id_released": ("You gave up your MyKey ID. Your account, the websites you allowed and what each of them "
                          "knows you by stay as they are.",
                          "マイキーIDを手放しました。アカウント、同意したサイト、各サイトでの識別子はそのままです。"),
    "mykey_id_taken": ("That MyKey ID is already taken. Choose another one.",
                       "そのマイキーIDはすでに使われています。別のIDを選んでください。"),
    "mykey_id_invalid": ("That MyKey ID cannot be used. Use 6 to 32 letters A–Z, digits, '_' or '-', with at least "
                         "one letter and never 12 digits in a row.",
                         "そのマイキーIDは使えません。英字・数字・「_」「-」の6〜32文字で、英字を1文字以上含み、"
                         "数字が12桁続かないものにしてください。"),
    "mykey_id_error": ("Your MyKey ID could not be changed. Please try again.",
                       "マイキーIDを変更できませんでした。もう一度お試しください。"),
}
REFUSAL_NOTICES = frozenset({"mykey_id_taken", "mykey_id_invalid", "mykey_id_error"})  # announced as alerts


def account_notice(code: str | None, lang: str) -> tuple[str, bool] | None:
    """The sentence for a notice code and whether it tells of a refusal; None for no code or an unknown one."""
    if code not in ACCOUNT_NOTICES:
        return None
    return _say(ACCOUNT_NOTICES[code], lang), code in REFUSAL_NOTICES


def _digest(return_to: str) -> str:
    return hashlib.sha256(return_to.encode()).hexdigest()


def error_page(code: str, status: int):
    lang = language()
    return make_response(render_template("error.html", lang=lang, code=code, message=explain(code, lang)), status)


@blueprint.app_errorhandler(LoginError)
def _login_error(error: LoginError):
    if request.path.startswith("/api/"):
        return jsonify(error=error.code, message=explain(error.code, "en"), message_ja=explain(error.code, "ja")), \
            error.status
    return error_page(error.code, error.status)


# --- login -----------------------------------------------------------------------------------------------


def start_login(client_id: str, rp_name: str, return_to: str, share: list[str], wants_facts: bool,
                extra: dict | None = None):
    """Open a login transaction bound to this browser and send it to the login page. `extra`: what else the card
    side is asked (idp/signing/flow.py `start_fields`)."""
    services = current()
    txn = services.logins.create(services.config.origin, client_id, rp_name, return_to, share, wants_facts, extra)
    response = redirect("/login")
    set_cookie(response, LOGIN_COOKIE, txn.id, int(services.config.login_ttl.total_seconds()))
    return response


@blueprint.get("/login")
def login_page():
    services = current()
    txn = services.logins.get(read_cookie(LOGIN_COOKIE))
    handle_url = f"{services.config.issuer}/api/login/{txn.handle}"
    qr = segno.make(handle_url, error="m").svg_inline(scale=4, dark="#1a1a1a")
    dev_command = None
    if services.config.dev_card:
        dev_command = (f".venv/bin/python -m nfc_bridge login {handle_url} --reader virtual "
                       f"--card {services.config.dev_card}")
    return render_template("login.html", lang=language(), txn=txn, handle_url=handle_url, qr=qr,
                           command=f"python -m nfc_bridge login {handle_url} --reader usb", dev_command=dev_command,
                           signing=signing_flow.request_of(txn))


@blueprint.get("/login/status")
def login_status():
    try:
        txn = current().logins.get(read_cookie(LOGIN_COOKIE))
    except LoginError as error:
        return jsonify(state="failed", error=error.code, message=explain(error.code, language()))
    body = {"state": txn.state}
    if txn.error:
        body |= {"error": txn.error, "message": explain(txn.error, language())}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/login/continue")
def login_continue():
    services = current()
    txn = services.logins.get(read_cookie(LOGIN_COOKIE))
    declined = declined_redirect(txn)  # the holder said no to signing: the website hears access_denied
    if declined is not None:
        services.logins.discard(txn)
        response = redirect(declined)
        clear_cookie(response, LOGIN_COOKIE)
        return response
    if txn.state == "failed":  # the browser learns the refusal with the status the bridge got (docs/bridge-api.yaml)
        code = txn.error or "server_error"
        return error_page(code, STATUS_OF.get(code, 403))
    if txn.state != "verified" or not txn.result:
        return redirect("/login")
    result = services.sealer.open(txn.result, "login-result")
    flags = {"login_for": _digest(txn.return_to)}
    if result.get("facts"):
        flags["facts"] = result["facts"]
    if result.get("signing"):  # the reference of the signatures kept for this request's code (idp/signing)
        flags["signing"] = result["signing"]
    session = Session(result["account_id"], result["auth_time"], result["certificate"], flags)
    session_id = services.sessions.create(session)
    services.logins.discard(txn)
    response = redirect(txn.return_to)
    set_cookie(response, SESSION_COOKIE, session_id, int(services.config.session_ttl.total_seconds()))
    clear_cookie(response, LOGIN_COOKIE)
    return response


# --- consent ---------------------------------------------------------------------------------------------


@blueprint.post("/consent")
def consent():
    services = current()
    session_id = read_cookie(SESSION_COOKIE)
    session = services.sessions.get(session_id)
    if session is None:
        return error_page("login_required", 401)
    token = services.sessions.take_flag(session_id, "consent_token", request.form.get("token", ""))
    return_to = services.sessions.take_flag(session_id, "consent_return_to")
    if token is None or not return_to:
        return error_page("invalid_request", 400)
    digest = _digest(return_to)
    if request.form.get("decision") == "approve":
        query = parse_qs(urlsplit(return_to).query)
        scopes = sorted(set(query.get("scope", [""])[0].split()))
        client_id, now = query.get("client_id", [""])[0], services.clock()
        services.consents.grant(session.account_id, client_id, scopes, now)
        services.access_record.note_consent(session.account_id, services.certificate_digest(session.certificate),
                                            client_id, scopes, now)
        services.sessions.set_flags(session_id, consent_for=digest)
    else:
        services.sessions.set_flags(session_id, deny_for=digest)
    return redirect(return_to)


# --- account ---------------------------------------------------------------------------------------------


@blueprint.get("/account")
def account():
    services = current()
    session_id = read_cookie(SESSION_COOKIE)
    session = services.sessions.get(session_id)
    if session is None:
        return start_login(ACCOUNT_CLIENT, "MyKey account / マイキー アカウント", "/account", [], wants_facts=False)
    csrf = session.flags.get("csrf") or secrets.token_urlsafe(24)
    services.sessions.set_flags(session_id, csrf=csrf)
    holder = services.mykey.get(session.account_id)
    # The access record and the consents are shown only in the one view right after the card opened them
    # (idp/holder/history.py); any other view shows how many sealed entries there are, and how to open them.
    opened, record_error = open_for_view(services, session.account_id)
    view = {"opened": opened is not None, "record_error": record_error,
            "record_message": explain(record_error, language()) if record_error else None,
            "counts": services.access_record.counts(session.account_id)}
    if opened is not None:
        clients = {c.client_id: c.name for c in services.clients.list()}
        since = {note.client_id: note.at for note in opened.consents}
        live = services.consents.get_many(session.account_id, sorted(clients))
        view |= {"consents": sorted(((since.get(c.client_id), c, clients[c.client_id]) for c in live),
                                    key=lambda row: (-(row[0].timestamp() if row[0] else 0), row[2])),
                 "history": [(entry, clients.get(entry.client_id, entry.client_id)) for entry in opened.releases],
                 "renewals": opened.renewals}
        view["signed"] = [(entry, name) for entry, name in view["history"] if entry.documents]  # idp/signing
    response = make_response(render_template(
        "account.html", lang=language(), mykey_id=holder.mykey_id if holder else None, csrf=csrf,
        notice=account_notice(request.args.get("notice"), language()), **view))
    if opened is not None or record_error:  # the opening was used; one still waiting for the card is kept
        forget_opening(response)
    response.headers["Cache-Control"] = "no-store"
    return response


def _account_session():
    services = current()
    session_id = read_cookie(SESSION_COOKIE)
    session = services.sessions.get(session_id)
    if session is None or request.form.get("csrf") != session.flags.get("csrf"):
        abort(403)
    return session


@blueprint.post("/account/consents/<client_id>/withdraw")
def withdraw(client_id: str):
    session = _account_session()
    services = current()
    signal_sessions.consent_withdrawn(services, current_signals().signals, session.account_id, client_id)
    services.consents.withdraw(session.account_id, client_id)
    return redirect("/account?notice=withdrawn")


@blueprint.post("/account/logout-everywhere")
def logout_everywhere():
    """End every session: this browser's and the holder's other IdP sessions, and (through session-revoked and
    back-channel logout) their sessions at every relying party they consented to."""
    session = _account_session()
    services = current()
    signal_sessions.session_ended(services, current_signals().signals, read_cookie(SESSION_COOKIE))
    signal_sessions.logged_out_everywhere(services, current_signals().signals, session.account_id)
    response = make_response(render_template("logged_out.html", lang=language()))
    clear_cookie(response, SESSION_COOKIE)
    return response


@blueprint.post("/account/mykey-id")
def change_mykey_id():
    session = _account_session()
    try:
        current().mykey.set_custom_id(session.account_id, request.form.get("mykey_id", ""))
    except MyKeyIdError as error:
        return redirect(f"/account?notice={error.code}")
    return redirect("/account?notice=mykey_id_changed")


@blueprint.post("/account/mykey-id/release")
def release_mykey_id():
    session = _account_session()
    current().mykey.give_up(session.account_id)
    return redirect("/account?notice=mykey_id_released")
