"""Every error code a person can meet, explained in plain English and Japanese.

The same codes are used by the JSON API, the pages and the tests. A code missing here is a test failure
(tests/test_idp_messages.py checks that every code the IdP can raise has both sentences).
"""

from __future__ import annotations

from flask import request

LANGUAGES = ("ja", "en")


def language() -> str:
    """The language a person's page is in: `?lang`, else the `lang` cookie, else Accept-Language, else Japanese.
    One choice for every page the IdP shows (holder pages, the handle page, error pages)."""
    chosen = request.args.get("lang") or request.cookies.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES), default="ja")

MESSAGES: dict[str, tuple[str, str]] = {
    # document signing (idp/signing)
    "signing_declined": ("You declined to sign the documents. Nothing was signed and the website received nothing.",
                         "文書への署名を取りやめました。何も署名されず、サイトには何も送られていません。"),
    "signing_pin_locked": ("The signing PIN is locked, so the card cannot sign. Only your municipal office can reset "
                           "it.",
                           "署名用パスワードがロックされているため署名できません。リセットは市区町村の窓口で行えます。"),
    # login transaction
    "login_not_found": ("There is no login in progress in this browser. Go back to the website and start again.",
                        "このブラウザで進行中のログインがありません。サイトに戻ってやり直してください。"),
    "challenge_expired": ("The login took longer than 5 minutes. Go back to the website and start again.",
                          "ログインの有効時間（5分）を過ぎました。サイトに戻ってやり直してください。"),
    "challenge_used": ("This login was already answered once. Start again from the website.",
                       "このログインはすでに使われています。サイトからやり直してください。"),
    "unknown_handle": ("This login link was already used or has expired.",
                       "このログイン用リンクは使用済みか、有効期限が切れています。"),
    "unknown_submission": ("This card answer does not belong to a login in progress.",
                           "このカードの応答は進行中のログインのものではありません。"),
    "proof_malformed": ("The card's answer was incomplete or damaged. Try again.",
                        "カードからの応答が不完全か壊れています。もう一度お試しください。"),
    # certificate checks
    "certificate_malformed": ("The card's certificate could not be read.",
                              "カードの電子証明書を読み取れませんでした。"),
    "not_jpki_certificate": ("This is not a My Number Card certificate.",
                             "マイナンバーカードの電子証明書ではありません。"),
    "signing_certificate_used_for_login": (
        "The signing certificate cannot be used to log in; the user-authentication certificate is needed.",
        "署名用電子証明書ではログインできません。利用者証明用電子証明書が必要です。"),
    "auth_certificate_used_for_signing": (
        "The basic facts must be signed with the signing certificate (the 6–16 character PIN).",
        "基本4情報の提供には署名用電子証明書（6〜16桁の暗証番号）による署名が必要です。"),
    "key_usage_invalid": ("The certificate is not allowed for this use.",
                          "この電子証明書はこの用途に使えません。"),
    "untrusted_issuer": ("The certificate was not issued by J-LIS (or by the development CA in development).",
                         "この電子証明書は J-LIS（開発環境では開発用認証局）が発行したものではありません。"),
    "certificate_expired": ("The card's certificate has expired. Renew it at your municipal office.",
                            "電子証明書の有効期限が切れています。お住まいの市区町村の窓口で更新してください。"),
    "certificate_not_yet_valid": ("The card's certificate is not valid yet.",
                                  "電子証明書はまだ有効になっていません。"),
    "certificate_revoked": ("The card's certificate has been revoked and cannot be used.",
                            "電子証明書は失効しているため使用できません。"),
    "certificate_on_hold": ("The card's certificate is suspended (the card was reported lost).",
                            "電子証明書は一時停止中です（カードの紛失届が出ています）。"),
    "revocation_unknown": (
        "We could not check whether the certificate is still valid, so the login was refused. Try again shortly.",
        "電子証明書の失効確認ができなかったため、ログインをお断りしました。しばらくしてからお試しください。"),
    "signature_invalid": ("The card's signature did not match this login.",
                          "カードの署名がこのログインと一致しませんでした。"),
    "certificates_not_linked": ("The signing and user-authentication certificates are not from the same card.",
                                "署名用と利用者証明用の電子証明書が同じカードのものではありません。"),
    "signed_attributes_invalid": ("What the card was given to sign for a document was not what the website asked "
                                  "for. Nothing was signed for the website. Please start again.",
                                  "文書の署名に使われた内容がサイトの依頼と一致しませんでした。サイトには何も渡されて"
                                  "いません。最初からやり直してください。"),
    # card side (reported by the bridge)
    "wrong_pin": ("The PIN was wrong.", "暗証番号が違います。"),
    "pin_locked": ("The PIN is locked. Only your municipal office can reset it.",
                   "暗証番号がロックされています。お住まいの市区町村の窓口で再設定してください。"),
    # the access record (idp/holder/history.py, mykey/record.py)
    "history_other_card": ("This card is not the one of the account that asked to open its access record. Log in "
                           "with this card first, or use the card you logged in with.",
                           "このカードは、提供の記録を開こうとしているアカウントのものではありません。"
                           "このカードで先にログインするか、ログインに使ったカードをお使いください。"),
    "history_link_in_browser": ("This link opens your access record with your card: open it in a JPKI app, or run "
                                "the command shown on the account page. Nothing was used up.",
                                "このリンクはカードで提供の記録を開くためのものです。JPKI対応アプリで開くか、"
                                "アカウント画面に表示されたコマンドを実行してください。リンクはまだ使えます。"),
    "record_key_mismatch": ("Your card's key does not open this access record. Nothing was changed.",
                            "カードの鍵ではこの提供の記録を開けませんでした。記録は変更していません。"),
    # OAuth / OIDC
    "access_denied": ("You declined to share your identity with this website.",
                      "このサイトへの情報提供を拒否しました。"),
    "invalid_request": ("The website sent an incomplete or invalid login request.",
                        "サイトからのログイン要求が不完全か不正です。"),
    "invalid_request_uri": ("The website's login request has expired or was already used. Go back to the website "
                            "and start the login again.",
                            "サイトからのログイン要求の有効期限が切れたか、すでに使用されています。サイトに戻って最初からやり直してください。"),
    "invalid_client": ("The website is not registered with this service.",
                       "このサイトは本サービスに登録されていません。"),
    "unauthorized_client": ("The website is not allowed to log people in this way.",
                            "このサイトはこの方法でのログインを許可されていません。"),
    "invalid_scope": ("The website asked for information this service does not provide.",
                      "サイトが提供できない情報を要求しました。"),
    "login_required": ("You need to log in with your card first.", "先にカードでログインしてください。"),
    "consent_required": ("You need to agree before this website receives your identity.",
                         "このサイトに情報を提供するには同意が必要です。"),
    "server_error": ("Something went wrong on our side. Try again shortly.",
                     "サービス側で問題が発生しました。しばらくしてからお試しください。"),
}


def explain(code: str, lang: str = "en") -> str:
    en, ja = MESSAGES.get(code, MESSAGES["server_error"])
    return ja if lang == "ja" else en
