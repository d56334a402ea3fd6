"""Revocation service: resident-register events to certificate status, OCSP, CRLs, operator API."""
