"""turn.end's xlen/xcrc: UTF-8 bytes and the zlib/IEEE CRC-32 of the turn's deltas."""

from rtprotocol import TextCheck, text_check
from rtprotocol.textcheck import mismatch


def test_the_crc_is_ieee_crc32_unsigned():
    assert text_check("123456789") == (9, 0xCBF43926)  # the standard check value of CRC-32/ISO-HDLC
    assert text_check("") == (0, 0)


def test_length_is_in_utf8_bytes_not_characters():
    assert text_check("café ☕")[0] == len("café ☕".encode()) == 9


def test_pieces_check_as_the_whole():
    pieces = [" Hmph", ".", " café", " ☕", "", "\n"]
    check = TextCheck()
    for p in pieces:
        check.add(p)
    assert (check.xlen, check.xcrc) == text_check("".join(pieces))


def test_mismatch_finds_a_lost_piece_and_a_changed_one():
    xlen, xcrc = text_check("Hello there")
    assert mismatch("Hello there", {"xlen": xlen, "xcrc": xcrc}) is None
    assert "bytes" in mismatch("Hello", {"xlen": xlen, "xcrc": xcrc})
    assert "CRC-32" in mismatch("Hello thera", {"xlen": xlen, "xcrc": xcrc})


def test_a_turn_end_without_the_keys_is_not_checked():
    assert mismatch("anything", {"t": "turn.end"}) is None
