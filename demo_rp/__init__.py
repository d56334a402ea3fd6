"""A demo relying-party website: "Log in with My Number Card" through the platform's OpenID Connect provider.

It is what a relying party's developer would write with Authlib's Flask client — nothing platform-specific.
"""
