"""Open-set policy: knownness scores, choosing one, the threshold policy."""
