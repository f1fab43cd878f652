"""aios.dotenv.parse: the env_file syntax, as a table; errors name the line, never a value."""
from __future__ import annotations

import pytest

from aios.dotenv import DotenvError, parse

VALID = [
    ("A=1\nB=two words\n", {"A": "1", "B": "two words"}),
    ("# comment\n\n   \nexport A=1\n  export   B = 2  \n", {"A": "1", "B": "2"}),
    ("A=value # a note\nB=a#b\nC=\n", {"A": "value", "B": "a#b", "C": ""}),
    ("A='lit $HOME \\n # not a note'\n", {"A": "lit $HOME \\n # not a note"}),
    ('A="x\\ny\\t\\"q\\" \\\\ \\$ \\z"\n', {"A": 'x\ny\t"q" \\ $ \\z'}),
    ('KEY="line 1\nline 2"\nNEXT=3\n', {"KEY": "line 1\nline 2", "NEXT": "3"}),
    ("A='one\n\ntwo'  # note\n", {"A": "one\n\ntwo"}),
    ("A=1\nA=2\n", {"A": "2"}),
    ("A=x=y\n", {"A": "x=y"}),
    ("_a1=ok\r\nB=crlf\r\n", {"_a1": "ok", "B": "crlf"}),
    ("", {}),
]


@pytest.mark.parametrize("text, values", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_files(text, values):
    assert parse(text) == values


INVALID = [
    ("A=1\nsecret-value-without-key\n", "line 2: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("1A=x\n", "line 1: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("=x\n", "line 1: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("A B=x\n", "line 1: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ('A="hunter2\nB=1\n', "line 1: the quoted value is never closed"),
    ("A='hunter2' trailing\n", "line 1: unexpected text after the closing quote"),
]


@pytest.mark.parametrize("text, message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_files_name_the_line_and_never_the_value(text, message):
    with pytest.raises(DotenvError) as info:
        parse(text)
    assert str(info.value) == message
    assert "hunter2" not in str(info.value) and "secret" not in str(info.value)
