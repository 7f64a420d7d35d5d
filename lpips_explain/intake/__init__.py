"""Image intake: decode, validate and align what users hand in (independent of the network)."""
