"""The DVC stages of dvc.yaml, one module each, run as `python -m stages.<name>`: fetch -> clean -> audit ->
plan -> tokenize -> train -> evaluate -> baseline -> aggregate. Each is a short main() that reads its slice
of params.yaml and calls the emotune library; nothing imports a stage."""
