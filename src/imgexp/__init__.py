"""imgexp: config-driven experiments for image recognition."""

__version__ = "0.1.0"
