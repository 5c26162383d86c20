"""imgexp-eval stage: its entry module is run.py."""
