"""Prefect tasks: each one call around an engine stage (imaudit.audits.pipeline)."""
