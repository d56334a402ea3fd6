"""The IdP's two cookies: the login transaction's browser binding and the session.

`__Host-` cookies (Secure, Path=/, no Domain: bound to this exact origin), HttpOnly, SameSite=Lax, short
Max-Age. Plain http on 127.0.0.1 drops the prefix and Secure only when IDP_INSECURE_DEV_COOKIES=1.
"""

from __future__ import annotations

from flask import request

from idp.services import current

LOGIN_COOKIE = "mykey-login"
SESSION_COOKIE = "mykey-session"


def _name(base: str) -> str:
    return base if current().config.insecure_dev_cookies else f"__Host-{base}"


def read_cookie(base: str) -> str | None:
    return request.cookies.get(_name(base))


def set_cookie(response, base: str, value: str, max_age: int) -> None:
    secure = not current().config.insecure_dev_cookies
    response.set_cookie(_name(base), value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="Lax")


def clear_cookie(response, base: str) -> None:
    secure = not current().config.insecure_dev_cookies
    response.delete_cookie(_name(base), path="/", secure=secure, httponly=True, samesite="Lax")
