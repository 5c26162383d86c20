"""imgexp-compare stage: its entry module is run.py."""
