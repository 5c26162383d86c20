"""Scores computed from predictions: classification and calibration, confusion, and retrieval
over embeddings (k-NN, precision@1, MAP@R). Pure numpy/torch: models and stages build on it."""

from imgexp.metrics.retrieval import knn_search, knn_vote, retrieval_metrics

__all__ = ["knn_search", "knn_vote", "retrieval_metrics"]
