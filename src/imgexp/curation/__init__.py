"""Curation before training: features, clustering and the choice of images to annotate."""
