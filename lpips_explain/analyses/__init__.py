"""Analyses on the core: attribution, sensitivity, repair, triplets, diagnostics, summaries."""
