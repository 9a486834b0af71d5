"""emotune: the library behind the DVC pipeline (stages/) and the `emotune` command (emotune/cli.py)."""
