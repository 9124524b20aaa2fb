"""Prefect flows: audit, on_release, scheduled."""
