from imgexp.models.factory import build_model, load_model
from imgexp.models.module import ImageClassifier

__all__ = ["ImageClassifier", "build_model", "load_model"]
