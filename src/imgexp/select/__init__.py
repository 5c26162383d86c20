"""imgexp-select stage: its entry module is run.py."""
