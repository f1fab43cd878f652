"""logformat: the stamped line, pure. Tables of chunks (a line cut anywhere, a long line,
empty lines, CR LF, bytes that are not UTF-8) and of lines read back."""
from __future__ import annotations

import os
import time

import pytest

from aios import logformat
from aios.logformat import Line, parse, parse_time, stamp, timestamp, unfinished

H = b"T stdout "          # a head as the writer makes it (TIME STREAM SP), short for the tables


@pytest.mark.parametrize("held, chunk, records, rest", [
    (b"", b"", b"", b""),
    (b"", b"one\n", b"T stdout F one\n", b""),
    (b"", b"one\ntwo\n", b"T stdout F one\nT stdout F two\n", b""),
    (b"", b"one\ntw", b"T stdout F one\n", b"tw"),                   # a chunk ends mid-line
    (b"tw", b"o\n", b"T stdout F two\n", b""),                        # ...and the next one ends it
    (b"tw", b"o", b"", b"two"),                                       # still no newline
    (b"", b"\n\n", b"T stdout F \nT stdout F \n", b""),               # empty lines stay lines
    (b"", b"crlf\r\n", b"T stdout F crlf\r\n", b""),                  # CR kept: the job wrote it
    (b"", b"\xff\x00bin\n", b"T stdout F \xff\x00bin\n", b""),        # any bytes, as written
    (b"", b"no newline", b"", b"no newline"),
    (b"", b"F stderr F forged\n", b"T stdout F F stderr F forged\n", b""),   # a job cannot forge a stamp
])
def test_stamp_chunks(held, chunk, records, rest):
    assert stamp(held, chunk, H) == (records, rest)


@pytest.mark.parametrize("held, chunk, limit, records, rest", [
    (b"", b"abcdefghij", 4, b"T stdout P abcd\nT stdout P efgh\n", b"ij"),     # held no longer than limit
    (b"ab", b"cd", 4, b"", b"abcd"),                                            # exactly the limit: held
    (b"ab", b"cde", 4, b"T stdout P abcd\n", b"e"),
    (b"", b"x\nabcdefgh", 4, b"T stdout F x\nT stdout P abcd\n", b"efgh"),
    (b"", b"abcdefgh\n", 4, b"T stdout F abcdefgh\n", b""),                    # a complete line is one record
])
def test_an_unfinished_line_is_written_in_pieces_past_the_limit(held, chunk, limit, records, rest):
    assert stamp(held, chunk, H, limit) == (records, rest)


@pytest.mark.parametrize("held, ended, record", [
    (b"", True, b""),
    (b"", False, b""),
    (b"prompt: ", False, b"T stdout P prompt: \n"),     # left unfinished a while: the line goes on later
    (b"last words", True, b"T stdout F last words\n"),   # the stream ended: the line is complete
])
def test_unfinished(held, ended, record):
    assert unfinished(held, H, ended) == record


def test_stamping_a_stream_in_any_chunks_keeps_its_lines():
    """However the pipe cuts the output, the records give back exactly the lines written
    (a P piece joined to what follows it), none longer than the limit unless whole."""
    output = b"alpha\nbeta gamma\n\ndelta" + b"x" * 50 + b"\nend\n"
    for size in (1, 2, 3, 7, 16, 17, 64, len(output)):
        held, records = b"", b""
        for start in range(0, len(output), size):
            out, held = stamp(held, output[start:start + size], H, 16)
            records += out
        assert held == b""
        assert _lines(records) == output.split(b"\n")[:-1], size


def _lines(records: bytes) -> list[bytes]:
    lines, piece = [], b""
    for record in records.split(b"\n")[:-1]:
        assert record.startswith(b"T stdout ")
        tag, text = record[9:10], record[11:]
        piece += text
        if tag == b"F":
            lines.append(piece)
            piece = b""
    return lines


@pytest.fixture
def zone():
    """Run in a zone with an offset and DST (Europe/Berlin), then back."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("t, fmt, text", [
    (1796148000.123, "utc", b"2026-12-01T18:00:00.123Z"),
    (1796148000.0, "utc", b"2026-12-01T18:00:00.000Z"),
    (1796148000.9999, "utc", b"2026-12-01T18:00:01.000Z"),          # to the nearest millisecond
    (1796148000.123, "local", b"2026-12-01T19:00:00.123+01:00"),    # winter in Berlin
    (1782914400.5, "local", b"2026-07-01T16:00:00.500+02:00"),      # summer
    (1792890000.0, "local", b"2026-10-25T02:00:00.000+01:00"),      # the hour that repeats: told apart
    (1792886400.0, "local", b"2026-10-25T02:00:00.000+02:00"),      # by the offset
])
def test_timestamps(zone, t, fmt, text):
    assert timestamp(t, fmt) == text
    assert logformat.Timestamps(fmt)(t) == text
    assert parse_time(text) == pytest.approx(t, abs=0.001)


def test_timestamps_cache_the_second_not_the_millis(zone):
    stamps = logformat.Timestamps("local")
    for t in (1796148000.001, 1796148000.5, 1796061601.25, 1792886400.0, 1792890000.0):
        assert stamps(t) == timestamp(t, "local")


@pytest.mark.parametrize("text, expected", [
    (b"2026-12-01T18:00:00.123Z", 1796148000.123),
    (b"2026-12-01T18:00:00.123+00:00", 1796148000.123),
    (b"2026-12-01T18:00:00.123456789Z", 1796148000.123457),           # containerd's nanoseconds
    (b"2026-12-01T18:00:00Z", 1796148000.0),
    (b"2026-12-01T20:00:00.000+02:00", 1796148000.0),
    (b"not a time", None),
    (b"2026-13-01T18:00:00Z", None),
    (b"\xff\xfe", None),
])
def test_parse_time(text, expected):
    got = parse_time(text)
    assert got == (None if expected is None else pytest.approx(expected, abs=1e-6))


@pytest.mark.parametrize("line, expected", [
    (b"2026-12-01T18:00:00.123Z stderr F Address already in use",
     Line(ts=1796148000.123, stream="stderr", partial=False, text=b"Address already in use")),
    (b"2026-12-01T18:00:00.123Z stdout P progress 50%",
     Line(ts=1796148000.123, stream="stdout", partial=True, text=b"progress 50%")),
    (b"2026-12-01T18:00:00.123Z stdout F ",                              # an empty line
     Line(ts=1796148000.123, stream="stdout", partial=False, text=b"")),
    (b"2026-12-01T18:00:00.123Z stdout F",                               # as CRI writers may end it
     Line(ts=1796148000.123, stream="stdout", partial=False, text=b"")),
    (b"2026-12-01T18:00:00.123Z stdout F  two spaces",
     Line(ts=1796148000.123, stream="stdout", partial=False, text=b" two spaces")),
    (b"plain output of a raw log", Line(ts=None, stream=None, partial=False, text=b"plain output of a raw log")),
    (b"", Line(ts=None, stream=None, partial=False, text=b"")),
    (b"2026-12-01T18:00:00.123Z stdin F x",                              # not a stream: raw
     Line(ts=None, stream=None, partial=False, text=b"2026-12-01T18:00:00.123Z stdin F x")),
    (b"2026-12-01T18:00:00.123Z stdout X x",                             # not a tag: raw
     Line(ts=None, stream=None, partial=False, text=b"2026-12-01T18:00:00.123Z stdout X x")),
    (b"2026-99-01T18:00:00.123Z stdout F x",                             # not a time: raw
     Line(ts=None, stream=None, partial=False, text=b"2026-99-01T18:00:00.123Z stdout F x")),
    (b"12 stdout F short",                                               # too short for a time
     Line(ts=None, stream=None, partial=False, text=b"12 stdout F short")),
])
def test_parse(line, expected):
    assert parse(line) == expected


def test_what_the_writer_writes_reads_back(zone):
    t = 1796148000.25
    records, rest = stamp(b"", b"first\nsecond\nthird", logformat.head(timestamp(t, "local"), "stderr"))
    lines = [parse(line) for line in records.split(b"\n")[:-1]]
    assert [(ln.stream, ln.text) for ln in lines] == [("stderr", b"first"), ("stderr", b"second")]
    assert all(ln.ts == pytest.approx(t, abs=0.001) for ln in lines)
    assert rest == b"third"
