"""File plumbing: atomic writes, JSON lines, locks, tensor files."""
