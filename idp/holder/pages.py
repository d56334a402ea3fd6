"""The pages a cardholder sees: login (QR code + bridge command, waiting), consent, account, errors; in
Japanese and English (`?lang=ja|en`, else the browser's Accept-Language)."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import segno
from flask import Blueprint, abort, jsonify, make_response, redirect, render_template, request

from idp.holder.cookies import LOGIN_COOKIE, SESSION_COOKIE, clear_cookie, read_cookie, set_cookie
from idp.holder.sessions import Session
from idp.login.bridge_api import STATUS_OF
from idp.login.messages import explain
from idp.login.transactions import LoginError
from idp.services import current
from mykey.directory import MyKeyIdError

blueprint = Blueprint("pages", __name__)

ACCOUNT_CLIENT = "mykey-account"  # the account page logs in like a relying party, with no code issued


def language() -> str:
    chosen = request.args.get("lang") or request.cookies.get("lang")
    if chosen in ("ja", "en"):
        return chosen
    return request.accept_languages.best_match(["ja", "en"], default="ja")


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


def start_login(client_id: str, rp_name: str, return_to: str, share: list[str], wants_facts: bool):
    """Open a login transaction bound to this browser and send it to the login page."""
    services = current()
    txn = services.logins.create(services.config.origin, client_id, rp_name, return_to, share, wants_facts)
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
                           command=f"python -m nfc_bridge login {handle_url} --reader usb", dev_command=dev_command)


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
    if txn.state == "failed":  # the browser learns the refusal with the status the bridge got (docs/bridge-api.yaml)
        code = txn.error or "server_error"
        return error_page(code, STATUS_OF.get(code, 403))
    if txn.state != "verified" or not txn.result:
        return redirect("/login")
    result = services.sealer.open(txn.result, "login-result")
    flags = {"login_for": _digest(txn.return_to)}
    if result.get("facts"):
        flags["facts"] = result["facts"]
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
        services.consents.grant(session.account_id, query.get("client_id", [""])[0], scopes, services.clock())
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
    clients = {c.client_id: c.name for c in services.clients.list()}
    consents = [(c, clients.get(c.client_id, c.client_id)) for c in services.consents.list(session.account_id)]
    history = [(entry, clients.get(entry.client_id, entry.client_id))
               for entry in services.access_log.list(session.account_id)]
    return render_template("account.html", lang=language(), mykey_id=holder.mykey_id if holder else None,
                           consents=consents, history=history, csrf=csrf, notice=request.args.get("notice"))


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
    current().consents.withdraw(session.account_id, client_id)
    return redirect("/account?notice=withdrawn")


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
