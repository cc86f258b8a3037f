# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The versions data, held against tests/data/mastodon/releases.json (Mastodon's release notes, SECURITY.md and
lib/tasks/db.rake, see tests/data/mastodon/FACTS.md "Releases and support" and "The 4.7 line")."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_env_reads as env_reads
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_versions as versions

DATA = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'data', 'mastodon')


@pytest.fixture(scope='module')
def releases():
    with open(os.path.join(DATA, 'releases.json'), encoding='utf-8') as handle:
        return json.load(handle)


def test_lines_match_the_release_facts(releases):
    assert set(versions.LINE_ORDER) == set(releases['lines'])
    for line, facts in releases['lines'].items():
        assert versions.newest_known(line) == facts['newest_known']
        assert versions.end_of_support(line) == facts['end_of_support']
        floor = facts['zero_downtime_floor']
        assert versions.zero_downtime_floor(line) == (floor['schema'].replace('_', ''), floor['release'])
    for line, facts in releases['unsupported'].items():
        assert not versions.is_supported(line) and versions.end_of_support(line) == facts['end_of_support']


def test_default_is_the_newest_line():
    assert versions.DEFAULT_LINE == versions.LINE_ORDER[-1] == '4.7'
    assert versions.DEFAULT_VERSION == 'v4.7.6' == versions.newest_known('4.7')


def test_lines_are_ordered_oldest_first():
    tuples = [versions.line_tuple(line) for line in versions.supported_lines()]
    assert tuples == sorted(tuples) and len(set(tuples)) == len(tuples)
    assert versions.supported_lines() == ('4.5', '4.6', '4.7')


def test_every_line_has_its_environment_schema():
    """Each line names its catalogue; the generated module holds it (scripts/gen_env_reads.py)."""
    for line in versions.LINE_ORDER:
        assert os.path.isfile(os.path.join(DATA, versions.env_reads_catalogue(line)))
        assert env_reads.SOURCES[line] == versions.env_reads_catalogue(line)
        assert len(env_reads.READS[line]) > 300
    assert 'ES_QUERY_TIMEOUT' in env_reads.READS['4.7'] and 'ES_QUERY_TIMEOUT' not in env_reads.READS['4.6']
    assert 'VITE_DEV_SERVER_PUBLIC' in env_reads.READS['4.6'] and 'VITE_DEV_SERVER_PUBLIC' not in env_reads.READS['4.7']


@pytest.mark.parametrize('version,line', [
    ('v4.7.6', '4.7'), ('v4.7.6@sha256:' + 'ab' * 32, '4.7'), ('v4.4.27', '4.4'), ('v10.12.0', '10.12'),
    ('4.7.6', None), ('latest', None), (None, None), ('v4.7', None), ('v4.7.6@sha256:short', None),
])
def test_line_of(version, line):
    assert versions.line_of(version) == line


def test_version_tuple_orders_patches():
    assert versions.version_tuple('v4.7.10') > versions.version_tuple('v4.7.9') > versions.version_tuple('v4.6.12')
    assert versions.version_tuple('v4.7.6@sha256:' + 'ab' * 32) == (4, 7, 6)


@pytest.mark.parametrize('version,line', [
    ('v4.7.6', '4.7'), ('v4.6.1', '4.6'), ('v4.8.0', '4.7'), ('v5.0.0', '4.7'), ('v4.4.27', '4.5'),
    ('v3.5.0', '4.5'), ('latest', '4.7'),
])
def test_schema_line(version, line):
    assert versions.schema_line(version) == line


def test_zero_downtime_floor():
    assert versions.zero_downtime_floor('4.7') == ('20241007071624', '4.3.0')
    assert versions.zero_downtime_floor('4.6') == ('20230907150100', '4.2.0')
    assert versions.zero_downtime_floor('4.5') == ('20230907150100', '4.2.0')
    # An unsupported line: the floor of the nearest older supported line (a lower bound).
    assert versions.zero_downtime_floor('4.8') == ('20241007071624', '4.3.0')
    assert versions.zero_downtime_floor('4.4') == ('20230907150100', '4.2.0')


def test_end_of_support():
    assert versions.end_of_support('4.5') == '2027-02-20'
    assert versions.end_of_support('4.4') == '2026-12-17'
    assert versions.end_of_support('4.7') is None and versions.end_of_support('3.5') is None
