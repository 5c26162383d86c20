"""What tests share: config composition, stage subprocesses, hand-made images and callbacks
that training subprocesses load by their dotted name (tests/ is on their PYTHONPATH)."""
