"""imgexp-app: compose conf/app.yaml, check the checkpoint and gallery, then `streamlit run` the
app's page script on localhost until interrupted."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import quiet_libraries, stage_main
from imgexp.errors import ImgexpError

PAGE_SCRIPT = Path(__file__).parent / "streamlit_app.py"
SETTING_KEYS = ("ckpt_path", "gallery", "cache_dir", "unknown_threshold", "compare_threshold",
                "top_k", "neighbours", "max_upload_mb", "map_csv",
                "max_map_points", "device")


def streamlit_command(cfg: DictConfig) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(PAGE_SCRIPT),
            "--server.address", str(cfg.host), "--server.port", str(cfg.port),
            "--server.headless", "true", "--server.maxUploadSize", str(int(cfg.max_upload_mb)),
            "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
            "--client.toolbarMode", "minimal"]


def app_settings(cfg: DictConfig):
    """conf/app.yaml as the page script's AppSettings, paths absolute (the app runs elsewhere),
    the `device` / `inference` group flattened."""
    from imgexp.app.settings import AppSettings
    from imgexp.device import PRECISIONS

    if cfg.inference.precision not in PRECISIONS:  # here, in one line, not in the browser
        raise ImgexpError(f"inference.precision={cfg.inference.precision!r} is not an option: "
                          f"use {PRECISIONS}")
    values = {key: cfg[key] for key in SETTING_KEYS}
    values |= {"precision": cfg.inference.precision,
               "channels_last": bool(cfg.inference.channels_last)}
    for key in ("ckpt_path", "gallery", "cache_dir", "map_csv"):
        values[key] = values[key] and str(Path(values[key]).resolve())
    return AppSettings.from_mapping(values)


def serve(command: list[str], env: dict) -> int:
    """Run the Streamlit server until it exits; SIGTERM or SIGINT to imgexp-app stops it too.

    Python's default SIGTERM ends this process alone, which left the server running on its
    port with no parent (and a kill of the launcher is how services and schedulers stop it).
    """
    server = subprocess.Popen(command, env=env)

    def stop(signum, frame) -> None:
        server.send_signal(signal.SIGTERM)  # Streamlit's own graceful shutdown

    handlers = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return server.wait()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if server.poll() is None:  # this process failed while the server ran
            server.kill()
            server.wait()


@stage_main("app")
def main(cfg: DictConfig) -> None:
    from imgexp.app.settings import ENV_VAR, write_settings
    from imgexp.models.factory import read_checkpoint

    quiet_libraries()
    read_checkpoint(cfg.ckpt_path)  # fail here, in one line, rather than in the browser
    if not Path(cfg.gallery).is_dir():
        raise ImgexpError(f"gallery {cfg.gallery} is not a folder: set gallery=DIR")
    settings = app_settings(cfg)
    settings_file = write_settings(Path(cfg.paths.output_dir) / "app_settings.json", settings)
    print(f"imgexp-app on http://{cfg.host}:{cfg.port} (Ctrl-C stops it)", flush=True)
    env = {**os.environ, ENV_VAR: str(settings_file)}
    sys.exit(serve(streamlit_command(cfg), env))


if __name__ == "__main__":
    main()
