"""imgexp-predict stage: its entry module is run.py."""
