"""OpenID Connect provider with My Number Card login."""
