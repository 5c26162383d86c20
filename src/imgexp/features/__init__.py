"""Curation before training: check, deduplicate and split collections (prepare); features,
clustering and the choice of images to annotate (select)."""
