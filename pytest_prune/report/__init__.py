"""Reports built from result records: terminal tables."""
