"""Image features for select and the app: a backbone or a trained model run over image files
(extractor.py), cached per source folder by file content (cache.py)."""
