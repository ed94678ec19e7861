"""Scripted experts that generate demonstrations (one module per domain family)."""
