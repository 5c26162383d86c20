"""The select stage's own config group (select=default|large), found by Hydra through
conf/select.yaml's hydra.searchpath (pkg://imgexp.select.conf)."""
