"""Incremental detokenizing and stop-string hold-back, without a model."""

from __future__ import annotations

from workers.backends.text_stream import IncrementalDecoder, StopScanner


def byte_decoder():
    # A byte-level "tokenizer": each token is one byte of UTF-8.
    return IncrementalDecoder(lambda ids: bytes(ids).decode("utf-8", "replace"))


def test_multibyte_characters_are_never_split():
    text = "a😀b猫é"
    decoder = byte_decoder()
    parts = [decoder.push(b) for b in text.encode()] + [decoder.flush()]
    assert "".join(parts) == text
    assert all("\ufffd" not in part for part in parts)


def test_stop_string_and_its_prefixes_are_held_back():
    scanner = StopScanner(["END"])
    sent = [scanner.feed(piece) for piece in ["hello E", "N", "D tail"]]
    assert sent == ["hello ", "", ""]
    assert scanner.stopped


def test_a_prefix_that_does_not_complete_is_released():
    scanner = StopScanner(["END"])
    assert scanner.feed("say EN") == "say "
    assert scanner.feed("OUGH") == "ENOUGH"
    assert scanner.feed("E") == ""
    assert scanner.flush() == "E"


def test_the_earliest_of_several_stops_wins():
    scanner = StopScanner(["zz", "b"])
    assert scanner.feed("aazzb") == "aa"


def test_no_stops_passes_text_through():
    scanner = StopScanner([])
    assert scanner.feed("abc") == "abc"


def test_a_character_cut_off_at_the_end_is_dropped():
    decoder = byte_decoder()
    parts = [decoder.push(b) for b in "ok😀".encode()[:-1]] + [decoder.flush()]
    assert "".join(parts) == "ok"
