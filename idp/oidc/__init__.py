"""The OpenID Provider: Authlib wiring, its HTTP endpoints, RP clients, codes and tokens, ID-token keys."""
