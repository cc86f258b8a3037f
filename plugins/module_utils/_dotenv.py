# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write and read `.env.production` files that every reader of Mastodon's config sees identically.

PRIVATE to this collection: no API guarantees.

Readers: Ruby dotenv 3.x (Rails, Mastodon's Gemfile.lock pins 3.x), Ruby dotenv 2.4 (Debian bookworm),
npm dotenv 17 (the streaming server) and a POSIX shell that sources the file (`set -a; . ./.env.production`).
What each of them does with a value:

* unquoted: Ruby 3.x drops backslashes before any character but `$` and expands `$VAR`, `${VAR}` and
  RUNS `$(command)`; Ruby 2.4 expands too; node keeps the text; a comment starts at `#`; the shell splits
  words, expands `~`, globs...
* double-quoted: Ruby 3.x turns a backslash-n into backslash-n (2.4 and node: a newline), drops other
  backslashes, expands `$VAR`/`$(command)`; node only replaces backslash-n/backslash-r; the shell expands `$`,
  backquotes and backslashes.
* single-quoted: literal in all of them, but no reader has an escape for `'` inside, and a value ending in a
  backslash (`'x\\'`) makes the node and Ruby 3.x patterns `'(?:\\\\'|[^'])*'` run on into later lines.

So the writer uses exactly three forms, chosen so that no reader has anything to interpret:

1. unquoted, for values made only of ``A-Z a-z 0-9 _ . / : @ , + % = -`` (not empty);
2. single quotes, for any other value without `'` that does not end in a backslash;
3. double quotes, for a value with `'` but without `"`, backslash, `$` or backquote.

Anything else, and any value with a control character (except tab), a Unicode line/paragraph separator or
NEL, or a lone surrogate, cannot be written so that all readers agree: `DotenvValueError` names the key.
"""

from __future__ import annotations

import re

KEY_RE = re.compile(r'\A[A-Za-z_][A-Za-z0-9_]*\Z')
_PLAIN_RE = re.compile(r'\A[A-Za-z0-9_./:@,+%=-]+\Z')
# C0 controls except TAB, DEL, C1 controls, line/paragraph separators.
_FORBIDDEN_RE = re.compile('[\x00-\x08\x0a-\x1f\x7f\x80-\x9f\u2028\u2029\ud800-\udfff]')
_DOUBLE_FORBIDDEN = ('"', '\\', '$', '`')

_CHAR_NAMES = {'\n': 'a newline', '\r': 'a carriage return', '\x00': 'a NUL byte'}


class DotenvValueError(ValueError):
    """A key or value that cannot be written so that every dotenv reader reads it back identically."""

    def __init__(self, key, reason):
        self.key = key
        self.reason = reason
        super(DotenvValueError, self).__init__('%s: %s' % (key, reason))


def _describe(char):
    if char in _CHAR_NAMES:
        return _CHAR_NAMES[char]
    return 'the character U+%04X' % ord(char)


def check_key(key):
    """Raise DotenvValueError unless `key` is a portable environment variable name."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise DotenvValueError(str(key), 'not a valid variable name (letters, digits and _; not starting with a digit)')


def quote_value(key, value):
    """Return the text to put after `KEY=` so that all readers read `value` back exactly.

    Raises DotenvValueError (naming `key`, never showing the value) when there is no such text.
    """
    if not isinstance(value, str):
        raise DotenvValueError(key, 'value must be a string, not %s' % type(value).__name__)
    bad = _FORBIDDEN_RE.search(value)
    if bad:
        raise DotenvValueError(key, 'value contains %s at position %d; dotenv readers (Ruby 2.4/3.x, node) and shells '
                                    'cannot all read it back identically' % (_describe(bad.group(0)), bad.start()))
    if value == '':
        return "''"
    if _PLAIN_RE.match(value):
        return value
    if "'" not in value:
        if value.endswith('\\'):
            raise DotenvValueError(key, 'value ends with a backslash and contains characters that need quoting; '
                                        "in single quotes node's and Ruby dotenv 3.x's parsers read past the closing quote")
        return "'" + value + "'"
    bad = [c for c in _DOUBLE_FORBIDDEN if c in value]
    if bad:
        raise DotenvValueError(key, 'value contains a single quote and also %s: it can be written neither in single '
                                    'quotes nor in double quotes (where Ruby dotenv expands $ and $(...) and drops '
                                    'backslashes, and node keeps them) so that all readers agree'
                               % ' and '.join(repr(c) for c in bad))
    return '"' + value + '"'


def check_value(key, value):
    """Raise DotenvValueError if the pair cannot be written; return None otherwise."""
    check_key(key)
    quote_value(key, value)


def render_line(key, value):
    check_key(key)
    return '%s=%s\n' % (key, quote_value(key, value))


def render(items, header=None, sections=None):
    """Render `.env` text.

    `items` is a dict key -> value. Keys are written in the order of `sections` (a list of
    (title, [keys])) when given, then any remaining keys sorted; without `sections`, sorted.
    All keys and values are checked before any text is produced: the first problem raises
    DotenvValueError. `header` (a list of comment lines without the `# `) starts the file.
    """
    errors = collect_errors(items)
    if errors:
        raise errors[0]
    out = []
    for line in header or []:
        out.append(('# ' + line).rstrip() + '\n')
    seen = set()
    groups = []
    for title, keys in sections or []:
        present = [k for k in keys if k in items and k not in seen]
        seen.update(present)
        if present:
            groups.append((title, present))
    rest = sorted(k for k in items if k not in seen)
    if rest:
        groups.append(('Other' if groups else None, rest))
    for title, keys in groups:
        if out:
            out.append('\n')
        if title:
            out.append('# %s\n' % title)
        for key in keys:
            out.append(render_line(key, items[key]))
    return ''.join(out)


def collect_errors(items):
    """Every DotenvValueError for a dict of items, in sorted key order."""
    errors = []
    for key in sorted(items, key=str):
        try:
            check_value(key, items[key])
        except DotenvValueError as exc:
            errors.append(exc)
    return errors


_LINE_RE = re.compile(r'\A\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*\Z')


class DotenvParseError(ValueError):
    def __init__(self, lineno, reason):
        self.lineno = lineno
        super(DotenvParseError, self).__init__('line %d: %s' % (lineno, reason))


def parse(text):
    """Parse a dotenv file written by this module or by hand, without any substitution.

    Used to read back secrets from an existing `.env.production`. Understands comments, blank lines,
    `export`, unquoted values (a ` #` starts a comment), single-quoted values (literal) and double-quoted
    values (backslash escapes `\\"`, `\\\\`, `\\n`). A value that a Ruby dotenv reader would expand
    (`$` in an unquoted or double-quoted value) is returned as written. Multi-line values are not
    supported (DotenvParseError). Returns a dict.
    """
    result = {}
    for lineno, line in enumerate(text.replace('\r\n', '\n').split('\n'), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        match = _LINE_RE.match(line)
        if not match:
            raise DotenvParseError(lineno, 'not of the form KEY=VALUE')
        key, raw = match.group(1), match.group(2)
        result[key] = _parse_raw(lineno, raw)
    return result


def _parse_raw(lineno, raw):
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end < 0:
            raise DotenvParseError(lineno, 'unterminated single quote')
        _check_tail(lineno, raw[end + 1:])
        return raw[1:end]
    if raw[:1] == '"':
        out = []
        i = 1
        while i < len(raw):
            char = raw[i]
            if char == '\\' and i + 1 < len(raw):
                nxt = raw[i + 1]
                out.append({'n': '\n', 'r': '\r'}.get(nxt, nxt))
                i += 2
                continue
            if char == '"':
                _check_tail(lineno, raw[i + 1:])
                return ''.join(out)
            out.append(char)
            i += 1
        raise DotenvParseError(lineno, 'unterminated double quote')
    hash_at = raw.find('#')
    if hash_at >= 0:
        raw = raw[:hash_at]
    return raw.strip()


def _check_tail(lineno, tail):
    tail = tail.strip()
    if tail and not tail.startswith('#'):
        raise DotenvParseError(lineno, 'text after the closing quote')
