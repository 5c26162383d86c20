"""imgexp-prepare stage: its entry module is run.py."""
