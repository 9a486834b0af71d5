"""Text normalisation shared by clean (training data) and predict (new text), so a model always
sees text prepared the same way it was trained on."""
from __future__ import annotations

import html
import re
import unicodedata

from emotune.config import CleanConfig

MENTION = re.compile(r"(?<![\w@])@\w+")
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
# What Excel writes when a cell starting with =, + or - fails as a formula (SemEval-2025 test has 5).
SPREADSHEET_ERRORS = {"#NAME?", "#VALUE!", "#REF!", "#DIV/0!", "#N/A", "#NUM!", "#NULL!"}


def normalise(text: str, cfg: CleanConfig, tweets: bool) -> str:
    if cfg.html_unescape:
        text = html.unescape(text)
    if cfg.unicode_form != "none":
        text = unicodedata.normalize(cfg.unicode_form, text)
    if tweets and cfg.mask_urls is not None:
        text = URL.sub(cfg.mask_urls, text)
    if tweets and cfg.mask_mentions is not None:
        text = MENTION.sub(cfg.mask_mentions, text)
    if cfg.lowercase:
        text = text.lower()
    if cfg.collapse_whitespace:
        text = " ".join(text.split())
    return text


def dedupe_key(text: str, mode: str) -> str:
    """The key two texts must share to count as duplicates: exact, or insensitive to case and
    punctuation. Emoji and other symbols stay in the key: in tweets they carry the emotion."""
    if mode == "exact":
        return text
    return " ".join("".join(" " if unicodedata.category(ch).startswith("P") else ch
                            for ch in text.casefold()).split())


def is_spreadsheet_error(text: str) -> bool:
    return text.strip() in SPREADSHEET_ERRORS
