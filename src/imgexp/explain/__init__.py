"""Explain a trained model: layer activations, clusters, maps, paths, attribution, one report."""
