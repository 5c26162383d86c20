"""What the launcher hands to the page script: conf/app.yaml, resolved, as a JSON file whose
path is in $IMGEXP_APP_SETTINGS (streamlit runs the script in its own process)."""

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from imgexp.atomic import write_json_atomic
from imgexp.errors import ImgexpError

ENV_VAR = "IMGEXP_APP_SETTINGS"


@dataclass(frozen=True)
class AppSettings:
    ckpt_path: str
    gallery: str
    cache_dir: str
    unknown_threshold: float = 0.6
    compare_threshold: float | None = None  # None: chosen on the validation split
    top_k: int = 5
    neighbours: int = 8
    max_upload_mb: float = 20.0
    map_csv: str | None = None
    max_map_points: int = 1500
    device: str = "auto"  # and the two below: conf/inference, resolved by imgexp/device.py
    precision: str = "auto"
    channels_last: bool = True

    @classmethod
    def from_mapping(cls, values: dict) -> "AppSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ImgexpError(f"unknown app setting(s) {unknown}; known: {sorted(known)}")
        for key in ("ckpt_path", "gallery"):
            if not values.get(key):
                raise ImgexpError(f"{key} is not set: imgexp-app ckpt_path=RUN/checkpoints/"
                                  "best.ckpt gallery=DIR")
        return cls(**values)


def write_settings(path: Path, settings: AppSettings) -> Path:
    return write_json_atomic(path, asdict(settings))


def read_settings() -> AppSettings:
    path = os.environ.get(ENV_VAR)
    if not path or not Path(path).is_file():
        raise ImgexpError("the app has no settings: start it with imgexp-app "
                          "ckpt_path=RUN/checkpoints/best.ckpt gallery=DIR")
    return AppSettings.from_mapping(json.loads(Path(path).read_text()))
