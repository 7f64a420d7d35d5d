"""Batch execution for audits: the local engine (default) and Ray (an optional extra)."""
