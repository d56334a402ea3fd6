"""OCSP (RFC 6960): the responder that answers from certificate status, and its HTTP endpoint."""
