# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the schema conformance test: Mastodon's env-reads catalogues, from tests/data/mastodon/."""
from __future__ import annotations

import json
import os

import pytest

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'data', 'mastodon')


@pytest.fixture(scope='session')
def env_reads():
    """{line: {name: [file:line, ...]}} for every supported line, as the catalogue of the line has it."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_versions as versions
    reads = {}
    for line in versions.LINE_ORDER:
        path = os.path.join(DATA, versions.env_reads_catalogue(line))
        with open(path, encoding='utf-8') as handle:
            reads[line] = json.load(handle)
    return reads


@pytest.fixture(scope='session')
def conformance_summary(request):
    """Lines for the end of the run: the figures per line."""
    return request.config.__dict__.setdefault('fediops_schema_summary', [])


def pytest_terminal_summary(terminalreporter):
    summary = terminalreporter.config.__dict__.get('fediops_schema_summary')
    if summary:
        terminalreporter.write_line('Schema conformance against Mastodon\'s env reads:')
        for line in summary:
            terminalreporter.write_line('  ' + line)
