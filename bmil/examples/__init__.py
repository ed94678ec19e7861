"""Worked examples a user runs from the installed package (``python -m bmil.examples.<name>``)."""
