"""Small helpers for cleaning and shortening user-facing text."""

import re
import unicodedata


def slugify(title: str, max_length: int = 60) -> str:
    """Turn a title into a URL slug: lowercase ASCII words joined by hyphens.

    >>> slugify("Café au Lait: A Guide!")
    'cafe-au-lait-a-guide'
    """
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = "-".join(words)
    return slug[:max_length].rstrip("-")


def word_count(text: str) -> int:
    """Number of words, where a word is a run of letters, digits or apostrophes."""
    return len(re.findall(r"[\w']+", text))


def truncate(text: str, limit: int, suffix: str = "...") -> str:
    """Shorten text to at most `limit` characters without cutting a word in half."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(suffix)]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut + suffix


def reading_time_minutes(text: str, words_per_minute: int = 200) -> int:
    """Estimated reading time, rounded up, never less than one minute."""
    words = word_count(text)
    return max(1, -(-words // words_per_minute))


def initials(full_name: str) -> str:
    """Initials of a name in capitals, e.g. 'ada lovelace' -> 'AL'."""
    return "".join(part[0].upper() for part in full_name.split() if part)
