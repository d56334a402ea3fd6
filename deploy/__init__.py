"""Deployment: gunicorn settings and the composition root (deploy/composition.py) that builds both services."""
