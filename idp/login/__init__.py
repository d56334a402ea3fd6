"""Card login: the transaction and its challenge, the named certificate checks, revocation, the bridge API."""
