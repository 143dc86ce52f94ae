"""What renders as nothing: the characters a message may not consist of alone.

A message made only of these shows an empty bubble (or a lone mark on a dotted circle), so it is
refused as empty. The rule, per character:

- Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, Unicode 15.0:
  the table below): zero-width characters, joiners, bidi controls, variation selectors, tags,
  the Hangul fillers; a renderer shows nothing for them;
- general category M (Mn, Mc, Me): combining marks, which only decorate a base character and
  have none here;
- general categories Z (separators: spaces, line and paragraph separators), Cc (controls: tab,
  newline, ...) and Cf (format characters);
- BLANK_GLYPHS: characters Unicode files as symbols that fonts draw blank (U+2800 BRAILLE
  PATTERN BLANK).

A message needs at least one character outside all of these. Private-use and unassigned
characters count as visible (a font may draw them; a renderer shows a box).
"""

from __future__ import annotations

import bisect
import unicodedata

# Default_Ignorable_Code_Point, Unicode 15.0 (DerivedCoreProperties.txt), as inclusive ranges.
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # SOFT HYPHEN
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x061C, 0x061C),  # ARABIC LETTER MARK
    (0x115F, 0x1160),  # HANGUL CHOSEONG FILLER, JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ, AA
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    (0x200B, 0x200F),  # ZERO WIDTH SPACE, ZWNJ, ZWJ, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # WORD JOINER, invisible operators, bidi isolates, deprecated formats
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFE00, 0xFE0F),  # VARIATION SELECTOR-1..16
    (0xFEFF, 0xFEFF),  # ZERO WIDTH NO-BREAK SPACE (byte order mark)
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFF8),  # unassigned specials
    (0x1BCA0, 0x1BCA3),  # SHORTHAND FORMAT controls
    (0x1D173, 0x1D17A),  # MUSICAL SYMBOL BEGIN/END formats
    (0xE0000, 0xE0FFF),  # tags, VARIATION SELECTOR-17..256, reserved
)
_STARTS = [start for start, _ in DEFAULT_IGNORABLE]
BLANK_GLYPHS = frozenset("\u2800")
INVISIBLE_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Zs", "Zl", "Zp", "Cc", "Cf"})


def default_ignorable(character: str) -> bool:
    point = ord(character)
    at = bisect.bisect_right(_STARTS, point) - 1
    return at >= 0 and point <= DEFAULT_IGNORABLE[at][1]


def renders_nothing(character: str) -> bool:
    """Whether this character alone shows nothing (see the module's rule)."""
    return (
        unicodedata.category(character) in INVISIBLE_CATEGORIES
        or default_ignorable(character)
        or character in BLANK_GLYPHS
    )


def shows_nothing(text: str) -> bool:
    """Whether the whole text would render as nothing (the empty text included)."""
    return all(renders_nothing(character) for character in text)
