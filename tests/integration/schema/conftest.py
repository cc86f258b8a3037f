# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the schema conformance test: Mastodon's env-reads-<version>.json from the reference data."""
from __future__ import annotations

import json
import os

import pytest


@pytest.fixture(scope='session')
def reference_dir():
    """shared/reference/mastodon, named by FEDIOPS_MASTODON_REFERENCE (scripts/run_tests.py sets it). A missing
    directory FAILS the test: the schema cannot be held against Mastodon's code without it."""
    path = os.environ.get('FEDIOPS_MASTODON_REFERENCE', '')
    if not path or not os.path.isdir(path):
        pytest.fail('Mastodon reference data not found (FEDIOPS_MASTODON_REFERENCE=%r); set it to '
                    'shared/reference/mastodon beside the checkout' % path)
    return path


@pytest.fixture(scope='session')
def env_reads(reference_dir):
    """{version: {name: [file:line, ...]}} for every release the schema supports."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as config
    reads = {}
    for tag in config.SUPPORTED_LINES.values():
        path = os.path.join(reference_dir, 'env-reads-%s.json' % tag[1:])
        if not os.path.isfile(path):
            pytest.fail('%s is missing: the schema supports %s' % (path, tag))
        with open(path, encoding='utf-8') as handle:
            reads[tag] = json.load(handle)
    return reads


@pytest.fixture(scope='session')
def conformance_summary(request):
    """Lines for the end of the run: the figures per release."""
    return request.config.__dict__.setdefault('fediops_schema_summary', [])


def pytest_terminal_summary(terminalreporter):
    summary = terminalreporter.config.__dict__.get('fediops_schema_summary')
    if summary:
        terminalreporter.write_line('Schema conformance against Mastodon\'s env reads:')
        for line in summary:
            terminalreporter.write_line('  ' + line)
