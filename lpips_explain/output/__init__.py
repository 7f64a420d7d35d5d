"""Output: interactive figures (plotly), static figures (matplotlib) and reports (JSON, HTML)."""
