"""The one exception a user sees, and how a command reports it. A leaf: imports nothing of emotune."""
from __future__ import annotations

import difflib
import sys
from typing import Callable


class EmotuneError(Exception):
    """An error in the user's input or params, with a message that says what to fix."""


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def run_cli(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Run a stage's or command's main(); a user error prints one clear message instead of a traceback."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except EmotuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
