# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._dotenv import (
    DotenvParseError, DotenvValueError, parse, quote_value, render)


@pytest.mark.parametrize('value,expected', [
    ('example.social', 'example.social'),
    ('', "''"),
    ('two words', "'two words'"),
    ('a#b', "'a#b'"),
    ('$(rm -rf /)', "'$(rm -rf /)'"),
    ('$HOME', "'$HOME'"),
    ('back\\slash', "'back\\slash'"),
    ('"dq"', "'\"dq\"'"),
    ("it's", '"it\'s"'),
    ('  padded  ', "'  padded  '"),
    ('tab\there', "'tab\there'"),
    ('日本', "'日本'"),
    ('abc=', 'abc='),
])
def test_quote_value(value, expected):
    assert quote_value('K', value) == expected


@pytest.mark.parametrize('value', [
    'a\nb', 'a\rb', 'nul\x00', 'ends with backslash \\', "it's $HOME", "it's \\", 'it\'s "x"', "it's `x`",
    'sep\u2028', 'del\x7f', 'lone \ud800',
])
def test_quote_value_rejects_naming_key(value):
    with pytest.raises(DotenvValueError) as info:
        quote_value('MY_KEY', value)
    assert info.value.key == 'MY_KEY'
    assert str(info.value).startswith('MY_KEY: ')
    assert value not in str(info.value)


def test_render_checks_everything_first_and_orders():
    with pytest.raises(DotenvValueError) as info:
        render({'A': 'ok', 'B': 'bad\n'})
    assert info.value.key == 'B'
    text = render({'Z': '1', 'A': '2', 'M': '3'}, header=['hi'], sections=[('S', ['M'])])
    assert text == '# hi\n\n# S\nM=3\n\n# Other\nA=2\nZ=1\n'
    assert render({'B': '1', 'A': '2'}) == 'A=2\nB=1\n'


def test_render_rejects_bad_key():
    with pytest.raises(DotenvValueError):
        render({'1X': 'a'})


def test_parse_round_trip():
    items = {'A': 'plain', 'B': 'two words', 'C': "it's", 'D': '', 'E': '$(x) #y'}
    assert parse(render(items)) == items


def test_parse_hand_written():
    text = '# c\n\nexport A=1\nB = two # comment\nC="x\\"y\\\\z"\nD=\'lit $x\'\n'
    assert parse(text) == {'A': '1', 'B': 'two', 'C': 'x"y\\z', 'D': 'lit $x'}


@pytest.mark.parametrize('text', ["A='open\n", 'A="open\n', 'not a line\n', "A='x' trailing\n"])
def test_parse_errors(text):
    with pytest.raises(DotenvParseError):
        parse(text)
