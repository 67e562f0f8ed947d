import pytest

from messaging.segments import (
    GSM_BASIC,
    GSM_EXTENSION,
    LOOKALIKES,
    gsm_replace,
    segment_info,
)

EMOJI = "\U0001f389"  # party popper: outside the BMP, a surrogate pair in UTF-16
UCS2_CHAR = "\u0144"  # ń: one UTF-16 unit, not in GSM-7


@pytest.mark.parametrize(
    ("text", "units", "segments", "per_segment", "remaining"),
    [
        ("", 0, 0, 160, 160),
        ("a" * 160, 160, 1, 160, 0),
        ("a" * 161, 161, 2, 153, 145),
        ("a" * 306, 306, 2, 153, 0),
        ("a" * 307, 307, 3, 153, 152),
        # One extension character is ESC + char: two septets.
        ("a" * 158 + "€", 160, 1, 160, 0),
        ("a" * 159 + "€", 161, 2, 153, 145),
        # 152 septets + "€" does not fit in a 153-septet part; the escape and its character
        # move together, so 306 septets take three parts instead of two.
        ("a" * 152 + "€" + "a" * 152, 306, 3, 153, 152),
    ],
)
def test_gsm7_counts(text, units, segments, per_segment, remaining):
    info = segment_info(text=text)
    assert (info.encoding, info.units, info.segments) == ("GSM-7", units, segments)
    assert (info.per_segment, info.remaining) == (per_segment, remaining)
    assert info.non_gsm == [] and info.replacements == {}


@pytest.mark.parametrize(
    ("text", "units", "segments", "per_segment", "remaining"),
    [
        (UCS2_CHAR * 70, 70, 1, 70, 0),
        (UCS2_CHAR * 71, 71, 2, 67, 63),
        (UCS2_CHAR * 134, 134, 2, 67, 0),
        (UCS2_CHAR * 135, 135, 3, 67, 66),
        # An emoji is two UTF-16 units; 68 units still fit in one 70-unit message.
        ("a" * 66 + EMOJI, 68, 1, 70, 2),
        ("a" * 68 + EMOJI, 70, 1, 70, 0),
        ("a" * 69 + EMOJI, 71, 2, 67, 63),
        # 66 units + a pair would straddle the 67-unit boundary, so the pair starts part two.
        ("a" * 66 + EMOJI + "aaa", 71, 2, 67, 62),
        ("a" * 66 + EMOJI + "a" * 66, 134, 3, 67, 66),
    ],
)
def test_ucs2_counts(text, units, segments, per_segment, remaining):
    info = segment_info(text=text)
    assert (info.encoding, info.units, info.segments) == ("UCS-2", units, segments)
    assert (info.per_segment, info.remaining) == (per_segment, remaining)


def test_characters_is_the_length_an_emoji_counting_once():
    assert segment_info(text="hi " + EMOJI).characters == 4


def test_every_gsm_character_stays_gsm7():
    assert len(GSM_BASIC) == 127  # 128 table positions less the escape
    assert len(GSM_EXTENSION) == 10
    for ch in "£¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà@$\n\r":
        assert ch in GSM_BASIC, repr(ch)
    info = segment_info(text="".join(sorted(GSM_BASIC)) + "".join(sorted(GSM_EXTENSION)))
    assert info.encoding == "GSM-7"
    assert info.units == 127 + 2 * 10


@pytest.mark.parametrize("ch", ["`", "ç", "á", "\t"])
def test_common_characters_outside_gsm7(ch):
    assert segment_info(text=f"a{ch}b").encoding == "UCS-2"


def test_emoji_switches_to_ucs2_and_is_named():
    info = segment_info(text=f"See you Saturday {EMOJI}")
    assert info.encoding == "UCS-2"
    assert info.non_gsm == [EMOJI]
    assert info.replacements == {}
    assert gsm_replace(text=f"Hi {EMOJI}") == f"Hi {EMOJI}"


def test_curly_quotes_are_named_with_their_replacement():
    text = "\u201cDon\u2019t\u201d forget \u2014 it\u2019s Saturday\u2026 \U0001f389"
    info = segment_info(text=text)
    assert info.encoding == "UCS-2"
    # Distinct, in order of appearance.
    assert info.non_gsm == ["\u201c", "\u2019", "\u201d", "\u2014", "\u2026", EMOJI]
    assert info.replacements == {
        "\u201c": '"',
        "\u2019": "'",
        "\u201d": '"',
        "\u2014": "-",
        "\u2026": "...",
    }


@pytest.mark.parametrize(
    ("text", "replaced"),
    [
        ("\u201cHi\u201d \u2018you\u2019", "\"Hi\" 'you'"),
        ("9\u201310 \u2014 late", "9-10 - late"),
        ("wait\u2026", "wait..."),
        ("10\u00a0am", "10 am"),
        ("zero\u200bwidth", "zerowidth"),
    ],
)
def test_gsm_replace_makes_the_text_gsm7_again(text, replaced):
    assert segment_info(text=text).encoding == "UCS-2"
    assert gsm_replace(text=text) == replaced
    assert segment_info(text=replaced).encoding == "GSM-7"


def test_lookalikes_are_not_gsm_and_their_replacements_are():
    for char, replacement in LOOKALIKES.items():
        assert char not in GSM_BASIC | GSM_EXTENSION, repr(char)
        assert all(c in GSM_BASIC | GSM_EXTENSION for c in replacement), repr(char)


def test_curly_quote_turns_a_one_part_text_into_three():
    # What staff see: one apostrophe pasted from a word processor triples the cost.
    text = "a" * 150 + "\u2019"
    assert segment_info(text=text).segments == 3
    assert segment_info(text=gsm_replace(text=text)).segments == 1


@pytest.mark.parametrize(
    ("text", "too_long"),
    [
        ("a" * 1600, False),
        ("a" * 1601, True),
    ],
)
def test_1600_character_limit(text, too_long):
    info = segment_info(text=text)
    assert info.too_long is too_long
    assert info.segments > 0  # still counted, so the page can show how far over it is


def test_info_is_frozen():
    info = segment_info(text="hi")
    with pytest.raises(AttributeError):
        info.segments = 5  # type: ignore[misc]
