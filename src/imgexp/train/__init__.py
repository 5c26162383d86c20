"""imgexp-train stage: its entry module is run.py."""
