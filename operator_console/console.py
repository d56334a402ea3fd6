"""The operator console's login: web sessions for operators, shared by the revocation pages and the IdP's.

An operator logs in with the token `python -m revocation operators add NAME` printed. The session lives in
Redis (only a hash of its id is a key), its id in a `__Host-` cookie (HttpOnly, SameSite=Strict), for an hour
after the last request and never more than 12 hours. Every request re-checks that the operator's token is still
enabled, so `operators disable` ends its sessions at once. Every POST carries the session's CSRF token. Console
pages are never cached and cannot be framed.

Plain http on 127.0.0.1 (development) drops the cookie's `__Host-` prefix and Secure flag only when the app
says so (CONSOLE_INSECURE_DEV_COOKIES=1 for the revocation service; the IdP's own dev-cookie setting there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from functools import wraps
from pathlib import Path

import redis
from flask import Blueprint, current_app, g, redirect, render_template, request, url_for

from operator_console.keys import CONSOLE_SESSIONS
from operator_console.registry import OperatorRegistry

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
COOKIE = "mykey-operator"
IDLE = dt.timedelta(hours=1)
LIFETIME = dt.timedelta(hours=12)
EXTENSION = "operator_console"
PREFIX = "/operator"  # every console page, on either service


@dataclass(frozen=True)
class Console:
    redis: redis.Redis
    operators: OperatorRegistry
    secure_cookies: bool = True
    links: tuple[tuple[str, str], ...] = ()  # the console's menu: (label, URL)
    title: str = "MyKey operator console"

    def open(self, digest: str, name: str) -> str:
        session_id = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        pipe = self.redis.pipeline(transaction=True)  # one key: never a session without its expiry
        pipe.hset(self._key(session_id), mapping={
            "digest": digest, "name": name, "csrf": secrets.token_urlsafe(24),
            "until": (now + LIFETIME).isoformat()})
        pipe.expire(self._key(session_id), IDLE)
        pipe.execute()
        return session_id

    def current(self, session_id: str | None) -> dict | None:
        """The live session for this id, its idle time renewed; None when missing, expired or disabled."""
        if not session_id or len(session_id) > 64:
            return None
        key = self._key(session_id)
        raw = {k.decode(): v.decode() for k, v in self.redis.hgetall(key).items()}
        if not raw or dt.datetime.fromisoformat(raw["until"]) < dt.datetime.now(dt.UTC):
            return None
        if self.operators.active(raw["digest"]) != raw["name"]:
            self.redis.delete(key)  # the token was disabled (or rotated): its sessions end with it
            return None
        self.redis.expire(key, IDLE)
        return raw

    def close(self, session_id: str | None) -> None:
        if session_id:
            self.redis.delete(self._key(session_id))

    @staticmethod
    def _key(session_id: str) -> str:
        return f"{CONSOLE_SESSIONS}:{hashlib.sha256(session_id.encode()).hexdigest()}"

    @property
    def cookie_name(self) -> str:
        return f"__Host-{COOKIE}" if self.secure_cookies else COOKIE


def install(app, console: Console, home: str) -> None:
    """Make `console` the app's operator console; `home` is the endpoint a login lands on."""
    app.extensions[EXTENSION] = (console, home)


def _console() -> Console:
    return current_app.extensions[EXTENSION][0]


def operator_page(view):
    """A console page: a logged-in operator (g.operator, g.csrf) or the login page; CSRF checked on POST."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        session = _console().current(request.cookies.get(_console().cookie_name))
        if session is None:
            return redirect(url_for("console.login"))
        if request.method == "POST" and not hmac.compare_digest(request.form.get("csrf", ""), session["csrf"]):
            log.warning("console form without its CSRF token", extra={"code": "csrf_mismatch"})
            return render("operator/error.html", 403, operator=session["name"], csrf=session["csrf"],
                          error="This form is stale or came from another site; nothing was changed. Reload the "
                                "page and try again.")
        g.operator, g.csrf = session["name"], session["csrf"]
        g.actor = f"operator:{session['name']}"
        return view(*args, **kwargs)
    return wrapper


def render(template: str, status: int = 200, **context):
    """A console page with the console's title and the operator's name and CSRF token in its context."""
    console = _console()
    context.setdefault("operator", g.get("operator"))
    context.setdefault("csrf", g.get("csrf"))
    return render_template(template, title=console.title, links=console.links, **context), status


blueprint = Blueprint("console", __name__, template_folder=str(TEMPLATES))


@blueprint.get("/login")
def login():
    return render("operator/login.html")


@blueprint.post("/login")
def login_submit():
    console = _console()
    found = console.operators.identify(request.form.get("token", "").strip())
    if found is None:
        log.warning("console login refused", extra={"code": "unauthorized"})
        return render("operator/login.html", 401, error="That token is unknown or disabled. Ask for a new one with "
                                                        "`python -m revocation operators add NAME`.")
    name, digest = found
    response = redirect(url_for(current_app.extensions[EXTENSION][1]))
    response.set_cookie(console.cookie_name, console.open(digest, name), max_age=int(LIFETIME.total_seconds()),
                        path="/", secure=console.secure_cookies, httponly=True, samesite="Strict")
    log.info("console login", extra={"code": "login"})
    return response


@blueprint.post("/logout")
@operator_page
def logout():
    console = _console()
    console.close(request.cookies.get(console.cookie_name))
    response = redirect(url_for("console.login"))
    response.delete_cookie(console.cookie_name, path="/", secure=console.secure_cookies, httponly=True,
                           samesite="Strict")
    return response


@blueprint.after_app_request
def _headers(response):
    if request.path.startswith(PREFIX + "/"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        response.headers["Referrer-Policy"] = "no-referrer"
    return response
