"""Run names as one safe path component: ``name=`` becomes the last part of the run folder's
name, so it may not make nested folders (``/``), hide them (``..``), hold characters file systems
or shells refuse, or push the folder name past the 255-byte limit of common file systems.

Unicode letters are kept (``name=résumé_学习`` is a fine folder name); what is replaced or cut is
said once on stderr, and the full name stays in the run's config.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata

log = logging.getLogger(__name__)

# 255 bytes per path component (ext4, xfs, APFS, NTFS): leave room for the "HH-MM-SS_" prefix
# and a "_12" collision suffix the run folder may get
MAX_NAME_BYTES = 200
UNSAFE = set('/\\:*?"<>|')  # separators, and what Windows or a shell glob would trip on


def _safe_char(c: str) -> str:
    if c in UNSAFE or c.isspace() or unicodedata.category(c).startswith("C"):
        return "_"  # control, format and unassigned characters too (NUL, newlines, RTL marks)
    return c


def _shorten(name: str) -> str:
    """The longest prefix under MAX_NAME_BYTES plus a hash of the whole name (kept distinct)."""
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    room = MAX_NAME_BYTES - len(digest) - 1
    head = name.encode()[:room].decode(errors="ignore")  # never cut a character in half
    return f"{head}-{digest}"


def safe_name(name: object) -> str:
    """``name`` as one file-name component: unsafe characters -> ``_``, too long -> shortened."""
    text = unicodedata.normalize("NFC", str(name))
    safe = "".join(_safe_char(c) for c in text).lstrip(".") or "run"  # no ".", "..", hidden
    if len(safe.encode()) > MAX_NAME_BYTES:
        safe = _shorten(safe)
    if safe != text:
        log.warning(
            "name=%r is not a safe folder name (it may hold no '/', control characters or "
            "more than %d bytes); the run folder uses %r instead.",
            text if len(text) < 80 else text[:77] + "...",
            MAX_NAME_BYTES,
            safe,
        )
    return safe
