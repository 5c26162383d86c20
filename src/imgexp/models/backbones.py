"""Backbones: a configurable conv stack (the seeds' Keras CNNs) and any timm model.

Every backbone maps a normalised NCHW float batch to (N, num_features) pooled features.
"""

import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from imgexp.errors import ImgexpError
from imgexp.models.safe_load import load_error, safe_load

log = logging.getLogger(__name__)

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU,
               "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _choice(table: dict, key: str, what: str):
    if key not in table:
        raise ImgexpError(f"{what}={key!r} is not an option: use one of {sorted(table)}")
    return table[key]


def _per_block(value, count: int, key: str) -> list:
    """One value for every conv block: a scalar is repeated, a list must have one per block."""
    if isinstance(value, str | int | float | bool):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ImgexpError(f"model.backbone.{key} has {len(values)} values for {count} conv "
                          f"blocks (model.backbone.channels): give one per block or a single value")
    return values


class SimpleCNN(nn.Module):
    """Per entry of `channels`: conv(k x k) + activation, then optionally a 2x2 pool and a
    dropout (`pool_after`, `padding`, `block_dropout` take one value per block, or one value
    for all); then flatten -> dense -> activation -> dropout.

    Keras-style (flatten, not global pooling), so the dense layer's size depends on
    `image_size`, which the config ties to data.image_size. The per-block switches let the
    presets reproduce the seeds' networks layer for layer.
    """

    def __init__(self, channels=(16, 32, 64), kernel_size: int = 3, pool: str = "max",
                 pool_after=True, padding="same", block_dropout=0.0,
                 activation: str = "relu", dense_units: int = 128, dropout: float = 0.5,
                 batch_norm: bool = False, image_size: int = 64, in_chans: int = 3,
                 checkpoint_path: str | None = None):
        super().__init__()
        act = _choice(ACTIVATIONS, activation, "model.backbone.activation")
        pool_cls = _choice(POOLS, pool, "model.backbone.pool")
        n = len(channels)
        pools = _per_block(pool_after, n, "pool_after")
        paddings = _per_block(padding, n, "padding")
        dropouts = _per_block(block_dropout, n, "block_dropout")
        layers, c_in, side = [], in_chans, image_size
        for c_out, pooled, pad, drop in zip(channels, pools, paddings, dropouts, strict=True):
            if pad not in ("same", "valid"):
                raise ImgexpError(f"model.backbone.padding={pad!r} is not an option: "
                                  "use same or valid")
            layers += [nn.Conv2d(c_in, c_out, kernel_size, padding=pad)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [act()]
            side -= 0 if pad == "same" else kernel_size - 1
            if pooled:
                layers += [pool_cls(2)]
                side //= 2
            layers += [nn.Dropout(drop)] if drop else []
            c_in = c_out
            if side < 1:
                raise ImgexpError(f"simple_cnn: image_size={image_size} is too small for these "
                                  "conv/pooling stages; raise data.image_size")
        self.features = nn.Sequential(*layers)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, dense_units), act(),
                                  nn.Dropout(dropout))
        self.num_features = dense_units
        if checkpoint_path:
            self._load(str(checkpoint_path))

    def _load(self, path: str) -> None:
        """Start from the weights of a run (its best.ckpt / last.ckpt: `backbone.*`) or a bare
        state dict of the same stack; every tensor must be there with its shape."""
        weights = _read_weights(path, ("backbone.",), timm_format=False)
        expected = self.state_dict()
        missing = [k for k in expected if k not in weights]
        wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
        if missing or wrong:
            first = wrong[0] if wrong else missing[0]
            found = f"{tuple(weights[first].shape)} in the file" if wrong else "missing"
            raise ImgexpError(
                f"model.backbone.checkpoint_path={path} does not fit this simple_cnn: "
                f"{len(missing)} of {len(expected)} tensors missing, {len(wrong)} of another "
                f"shape ({first}: {tuple(expected[first].shape)} here, {found}); give the "
                "same channels/kernel_size/dense_units/image_size as the run it comes from")
        self.load_state_dict({k: weights[k] for k in expected})
        log.info("loaded %d/%d simple_cnn tensors from %s", len(expected), len(expected), path)

    def block_outputs(self) -> list[str]:
        """Names of the last module of each conv block (the module before the next conv)."""
        convs = [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        return [f"features.{i - 1}" for i in convs[1:]] + [f"features.{len(self.features) - 1}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.features(x))

    def param_stages(self) -> list[list[str]]:
        """Parameter names by stage, input to top: one stage per conv block, then the neck
        (what progressive unfreezing thaws group by group)."""
        stages: list[list[str]] = []
        for name, layer in self.features.named_children():
            if isinstance(layer, nn.Conv2d):
                stages.append([])
            stages[-1] += [f"features.{name}.{p}" for p, _ in layer.named_parameters()]
        stages.append([f"neck.{p}" for p, _ in self.neck.named_parameters()])
        return stages


# prefixes a backbone's tensors carry in the checkpoints users have: an imgexp / Lightning
# module (backbone.model.), a wrapper holding the timm model as `model` (DataParallel's
# `module.` is already stripped by timm's load_state_dict)
CHECKPOINT_PREFIXES = ("backbone.model.", "model.")
WEIGHTS_ADVICE = ("give a state dict (.pth, .safetensors) or an imgexp/Lightning checkpoint "
                  "of this backbone")


def _read_weights(path: str, prefixes: tuple[str, ...] = CHECKPOINT_PREFIXES,
                  timm_format: bool = True) -> dict[str, torch.Tensor]:
    """The backbone's tensors in a weights file, named as in the backbone (for timm, before
    its own per-architecture key mapping): a bare state dict, or a checkpoint holding one.
    Read as data only (models/safe_load.py); a file without tensors stops here, in one line,
    instead of leaving timm to fetch the architecture's weights from the hub."""
    if timm_format:
        import timm  # here, not at the top: a SimpleCNN run does not pay timm's import

        try:
            # timm picks `state_dict` / `model` / EMA in a checkpoint, reads safetensors,
            # drops `module.`
            state_dict = timm.models.load_state_dict(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle/zip/torch/safetensors say it their way
            raise load_error(path, exc, WEIGHTS_ADVICE, "model.backbone.checkpoint_path") from None
    else:
        state_dict = safe_load(path, WEIGHTS_ADVICE, "model.backbone.checkpoint_path")
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
            state_dict = state_dict["state_dict"]
    tensors = {key: value for key, value in state_dict.items() if torch.is_tensor(value)} \
        if isinstance(state_dict, dict) else {}
    if not tensors:
        raise ImgexpError(f"model.backbone.checkpoint_path={path} holds no tensors: "
                          f"{WEIGHTS_ADVICE}")
    for prefix in prefixes:
        if any(key.startswith(prefix) for key in tensors):
            return {key[len(prefix):]: value for key, value in tensors.items()
                    if key.startswith(prefix)}
    return tensors


@contextmanager
def _load_result(found: list):
    """Record the key check of timm's pretrained load into `found`: timm loads non-strictly
    (num_classes=0 drops the classifier) and only logs missing keys, so a file whose keys
    don't match would silently leave random weights. timm's own key lists (hundreds of names
    in one log line) are held back: the caller reports the outcome in one line. The hub is
    offline meanwhile: the weights come from the file, never from a download."""
    from timm.models import _builder

    original = _builder.load_pretrained
    timm_log = logging.getLogger(_builder.__name__)

    def load_pretrained(model, *args, **kwargs):
        hook = model.register_load_state_dict_post_hook(lambda _m, keys: found.append(keys))
        try:
            original(model, *args, **kwargs)
        finally:
            hook.remove()

    level = timm_log.level
    timm_log.setLevel(logging.ERROR)
    try:
        with mock.patch.object(_builder, "load_pretrained", load_pretrained), _hub_offline():
            yield
    finally:
        timm_log.setLevel(level)


def _hub_unreachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can't be reached: one request with a short timeout through
    huggingface_hub's own HTTP client (so HF_ENDPOINT and proxies count), instead of the
    download's long time-outs and retries (~47 s) before it gives up."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.is_offline_mode():
        return True
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure to reach the hub means offline here
        return True
    return False


@contextmanager
def _hub_offline():
    """huggingface_hub's offline mode for one load: weights already in the local cache load,
    missing ones fail at once instead of retrying the network."""
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True):
        yield


def pooled_width(model: nn.Module) -> int:
    """The width of a timm model's output without classifier: `head_hidden_size`, which
    differs from `num_features` where a conv head follows the pooling (MobileNetV3: 1024 vs
    288, GhostNet); models without the attribute output `num_features`."""
    return getattr(model, "head_hidden_size", None) or model.num_features


def _fixed_size(name: str) -> int | None:
    """The one input size of models built for it (ViT, DeiT, Swin, LeViT, EfficientFormer:
    position embeddings or attention biases sized for it); None for the others."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name.split(".")[0])
    return cfg.input_size[-1] if cfg and cfg.fixed_input_size else None


def _check_runs(model: nn.Module, name: str, image_size: int, in_chans: int) -> None:
    """One forward at data.image_size before training: a model that cannot run at that size
    is refused in one line naming why, not a traceback at the first batch."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            width = model(torch.zeros(1, in_chans, image_size, image_size)).shape[-1]
    except Exception as exc:  # noqa: BLE001 - any failure here means: not at this size
        fixed = _fixed_size(name)
        built_for = f"built for {fixed} px only; " if fixed else ""
        detail = " ".join(str(exc).split())[:200]
        raise ImgexpError(f"model.backbone.name={name} does not run on data.image_size="
                          f"{image_size} images ({built_for}{type(exc).__name__}: {detail}): "
                          "use another data.image_size or another model") from None
    finally:
        model.train(training)
    if width != pooled_width(model):
        raise ImgexpError(f"model.backbone.name={name} outputs {width} features where timm "
                          f"says {pooled_width(model)}: its head could not be sized")


class TimmBackbone(nn.Module):
    """Any timm model without its classifier (num_classes=0 gives pooled features).

    pretrained=true uses timm's normal loading (Hugging Face hub; from the local cache alone
    when the hub can't be reached). checkpoint_path= loads a local file through the same
    timm path (pretrained_cfg_overlay), so timm's per-architecture key mapping applies; every
    tensor of the backbone must be found there.
    """

    def __init__(self, name: str, pretrained: bool = False, checkpoint_path: str | None = None,
                 drop_rate: float = 0.0, drop_path_rate: float | None = None, in_chans: int = 3,
                 image_size: int | None = None):
        import timm  # here, not at the top: a SimpleCNN run does not pay timm's import

        super().__init__()
        kwargs = dict(num_classes=0, drop_rate=drop_rate, in_chans=in_chans)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
            raise ImgexpError(f"model.backbone.name={name!r} is not a timm model "
                              "(see timm.list_models())")
        if image_size and _fixed_size(name):  # built for data.image_size, not for its own
            kwargs["img_size"] = image_size
        found: list = []
        if checkpoint_path:
            if not Path(checkpoint_path).is_file():
                raise ImgexpError(f"model.backbone.checkpoint_path={checkpoint_path} not found")
            weights = _read_weights(str(checkpoint_path))
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"state_dict": weights})
            loading = _load_result(found)
        elif pretrained:
            kwargs["pretrained"] = True
            loading = _hub_offline() if _hub_unreachable() else nullcontext()
        else:
            loading = nullcontext()
        try:
            with loading:
                self.model = timm.create_model(name, **kwargs)
        except Exception as exc:
            if kwargs.get("pretrained") and not checkpoint_path:
                raise ImgexpError(
                    f"cannot load pretrained weights for {name} ({type(exc).__name__}); "
                    "offline? pass model.backbone.checkpoint_path=/path/to/weights "
                    "or set model.backbone.pretrained=false") from None
            detail = " ".join(str(exc).split())[:300]  # size mismatches span many lines
            if checkpoint_path:
                raise ImgexpError(f"model.backbone.checkpoint_path={checkpoint_path} does not "
                                  f"fit {name}: {detail}") from None
            raise ImgexpError(f"cannot build backbone {name}: {detail}") from None
        if checkpoint_path:
            self._check_loaded(name, str(checkpoint_path), weights, found)
        self.num_features = pooled_width(self.model)
        self.name = name
        if image_size:
            _check_runs(self.model, name, image_size, in_chans)

    def _check_loaded(self, name: str, path: str, weights: dict, found: list) -> None:
        # BatchNorm's step counters are not weights (torch fills them in when absent)
        expected = [k for k in self.model.state_dict() if not k.endswith("num_batches_tracked")]
        total = len(expected)
        missing = [k for k in found[0].missing_keys if k in expected] if found else expected
        if missing:
            raise ImgexpError(
                f"model.backbone.checkpoint_path={path}: only {total - len(missing)} of {total} "
                f"{name} tensors found (missing {', '.join(missing[:3])}, ...; the file has "
                f"{', '.join(list(weights)[:3])}, ...): give a timm/torchvision state dict of "
                f"{name} or an imgexp/Lightning checkpoint of it")
        log.info("loaded %d/%d %s tensors from %s (%d in the file unused)", total, total, name,
                 path, len(found[0].unexpected_keys))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def group_matcher(self):
        """timm's stage grouping (used for progressive unfreezing)."""
        return self.model.group_matcher()

    def param_stages(self) -> list[list[str]]:
        """Parameter names by stage, input to top, from timm's coarse group_matcher()
        (stem, one group per block stage, the final conv/norm with the last stage)."""
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{name}" for name in names] for _, names in sorted(groups.items())]
