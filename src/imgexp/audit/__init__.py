"""The audit stage: near-duplicates, leaks across splits, poor images and likely label errors."""
