"""How the app computes: its `device` and `inference` config (conf/inference, as for eval,
predict and explain) resolved by the one resolver (imgexp/device.py), for the classifier
(Recognise) and for the embeddings (gallery, queries, Compare and its threshold)."""

from imgexp.app.settings import AppSettings
from imgexp.device import Inference
from imgexp.features.extractor import FeatureExtractor
from imgexp.models import load_model
from imgexp.models.inference import inference_for


def load_classifier(settings: AppSettings) -> tuple[object, Inference]:
    """The checkpoint's model, prepared (device, layout) for the precision it resolved to."""
    model = load_model(settings.ckpt_path)
    return model, inference_for(model, settings.device, {
        "precision": settings.precision, "channels_last": settings.channels_last})


def load_extractor(settings: AppSettings) -> FeatureExtractor:
    """The select stage's extractor over the checkpoint's embeddings. Its cache identity holds
    the resolved precision, so cached gallery vectors always match the queries' precision."""
    return FeatureExtractor.from_checkpoint(settings.ckpt_path, mode="embed",
                                            device=settings.device,
                                            precision=settings.precision,
                                            channels_last=settings.channels_last)
