"""Data curation before training: check, deduplicate, split and describe image collections."""
