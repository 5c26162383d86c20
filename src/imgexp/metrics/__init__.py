"""Post-training evaluation: retrieval metrics over embeddings (k-NN, precision@1, MAP@R)."""

from imgexp.metrics.retrieval import knn_search, knn_vote, retrieval_metrics

__all__ = ["knn_search", "knn_vote", "retrieval_metrics"]
