"""Signing documents with the card's signing key at a relying party's request (docs/relying-parties.md, "Signing
documents with the My Number Card")."""
