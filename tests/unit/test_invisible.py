"""The table of characters that render as nothing (repo/invisible.py), checked against Unicode."""

from __future__ import annotations

import itertools
import sys
import unicodedata

import pytest

from repo.invisible import DEFAULT_IGNORABLE, default_ignorable, renders_nothing, shows_nothing


def test_the_default_ignorable_table_is_sorted_and_disjoint() -> None:
    for (start, end), (next_start, _) in itertools.pairwise(DEFAULT_IGNORABLE):
        assert start <= end < next_start


@pytest.mark.parametrize(
    "point",
    [
        0x00AD,
        0x034F,
        0x061C,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x180B,
        0x180E,
        0x180F,
        0x200B,
        0x200F,
        0x202A,
        0x202E,
        0x2060,
        0x206F,
        0x3164,
        0xFE00,
        0xFE0F,
        0xFEFF,
        0xFFA0,
        0xFFF0,
        0xFFF8,
        0x1BCA0,
        0x1BCA3,
        0x1D173,
        0x1D17A,
        0xE0000,
        0xE0001,
        0xE0100,
        0xE01EF,
        0xE0FFF,
    ],
)
def test_each_range_s_ends_are_default_ignorable(point: int) -> None:
    assert default_ignorable(chr(point))
    assert renders_nothing(chr(point))


@pytest.mark.parametrize(
    "point",
    [
        0x00AC,
        0x00AE,
        0x0350,
        0x115E,
        0x1161,
        0x17B6,
        0x200A,
        0x2010,
        0x3163,
        0xFE10,
        0xFFF9,
        0x1D172,
        0x1D17B,
        0xE1000,
        0x41,
        0x1F44B,
    ],
)
def test_the_neighbours_of_the_ranges_are_not(point: int) -> None:
    assert not default_ignorable(chr(point))


def test_over_the_whole_code_space_the_rule_is_the_table_the_categories_and_u2800() -> None:
    # the whole code space: what renders nothing is exactly the table, the categories, U+2800
    ignorable = {p for start, end in DEFAULT_IGNORABLE for p in range(start, end + 1)}
    for point in range(sys.maxunicode + 1):
        character = chr(point)
        category = unicodedata.category(character)
        expected = (
            category[0] in "MZ" or category in ("Cc", "Cf") or point in ignorable or point == 0x2800
        )
        assert renders_nothing(character) == expected, hex(point)


@pytest.mark.parametrize(
    ("text", "nothing"),
    [
        ("", True),
        ("\u034f\ufe0f\u17b4\u180b\U000e0100\u0301", True),  # the review's characters
        (" \u0301\n\u20dd\u0903 ", True),  # marks alone between separators
        ("\u2800\u3164", True),
        ("e\u0301", False),  # a mark on a base character
        ("\u2764\ufe0f", False),  # an emoji with its presentation selector
        ("\ue000", False),  # private use: a font may draw it
        ("\U000e0041x", False),
    ],
)
def test_a_text_shows_nothing_only_when_every_character_does(text: str, nothing: bool) -> None:
    assert shows_nothing(text) == nothing
