# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the documentation tests (the shared ones come from tests/integration/awx/awx_helpers.py)."""
from __future__ import annotations

import os
import re
import sys
import textwrap

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'awx'))

from awx_helpers import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    COLLECTION_ROOT, collections_path, role_argument_specs, role_names, role_variables, tool)

DOCSITE = os.path.join(COLLECTION_ROOT, 'docs', 'docsite')
MARKER = re.compile(r'^\.\. fediops-check:\s*(?P<kind>[\w-]+)(?P<args>(?:\s+\S+)*)\s*$')
DIRECTIVE = re.compile(r'^\.\. code-block::\s*(?P<lang>\S*)\s*$')


def guide_names():
    with open(os.path.join(DOCSITE, 'extra-docs.yml'), encoding='utf-8') as handle:
        data = yaml.safe_load(handle)
    return [name for section in data['sections'] for name in section['toctree']]


class Block(object):
    def __init__(self, guide, line, lang, kind, args, text):
        self.guide, self.line, self.lang, self.kind, self.text = guide, line, lang, kind, text
        self.args = dict(a.split('=', 1) if '=' in a else (a, True) for a in args.split())

    @property
    def id(self):
        return '%s:%d:%s' % (self.guide, self.line, self.kind)


def code_blocks(guide):
    """Every code-block of docs/docsite/rst/<guide>.rst with the fediops-check marker above it
    (kind None when there is none)."""
    path = os.path.join(DOCSITE, 'rst', guide + '.rst')
    with open(path, encoding='utf-8') as handle:
        lines = handle.read().splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = DIRECTIVE.match(line)
        if not match:
            continue
        marker = None
        back = index - 1
        while back >= 0 and not lines[back].strip():
            back -= 1
        if back >= 0:
            marker = MARKER.match(lines[back])
        body = index + 1
        while body < len(lines) and (lines[body].strip().startswith(':') or not lines[body].strip()):
            body += 1  # options and the blank line
        end = body
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith((' ', '\t'))):
            end += 1
        text = textwrap.dedent('\n'.join(lines[body:end])).strip('\n') + '\n'
        blocks.append(Block(guide, index + 1, match.group('lang'), marker.group('kind') if marker else None,
                            marker.group('args') if marker else '', text))
    return blocks


def all_blocks():
    return [block for guide in guide_names() for block in code_blocks(guide)]
