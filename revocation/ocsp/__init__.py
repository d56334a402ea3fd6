"""OCSP (RFC 6960): the responder that answers from certificate status (responder.py), and its HTTP endpoint
(wsgi.py)."""
