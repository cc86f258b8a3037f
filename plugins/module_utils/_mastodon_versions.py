# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Mastodon release lines this collection deploys, as data: one home for every version fact.

PRIVATE to this collection: no API guarantees.

A new patch release is a change of `newest` below (and of the tests that name it); a new line is one more
entry of LINES, its env-reads catalogue under tests/data/mastodon/ and `python scripts/gen_env_reads.py`.
Nothing else in the code names a version. This module imports nothing from the collection, so the generator
script can load it by path.

Sources (tests/data/mastodon/README.md): Mastodon's release notes and SECURITY.md as of 2026-12 for the newest
patches and the end of support; lib/tasks/db.rake:68-72 for the zero-downtime floor, the oldest schema from
which `db:pre_migration_check` lets the pre-deployment migrations run while the old version keeps serving.
"""

from __future__ import annotations

import re

# Oldest line first. `floor`: (schema version, release) of the zero-downtime floor of the line's
# pre-migration check; `end_of_support`: the date Mastodon stops fixing the line (None: not announced);
# `env_reads`: the catalogue of the environment variables that the line's code reads (tests/data/mastodon/),
# from which plugins/module_utils/_mastodon_env_reads.py is generated.
LINES = (
    # lib/tasks/db.rake at v4.5.15: schema 2023_09_07_150100 (4.2.0).
    {'line': '4.5', 'newest': 'v4.5.20', 'floor': ('20230907150100', '4.2.0'), 'end_of_support': '2027-02-20',
     'env_reads': 'env-reads-4.5.15.json'},
    # lib/tasks/db.rake at v4.6.5: schema 2023_09_07_150100 (4.2.0).
    {'line': '4.6', 'newest': 'v4.6.9', 'floor': ('20230907150100', '4.2.0'), 'end_of_support': None,
     'env_reads': 'env-reads-4.6.5.json'},
    # lib/tasks/db.rake:68-72 at the 4.7 branch point: schema 2024_10_07_071624 ("earlier than 4.3.0 are not
    # supported"); a zero-downtime upgrade to 5.0 will have to pass through 4.7 (release notes).
    {'line': '4.7', 'newest': 'v4.7.6', 'floor': ('20241007071624', '4.3.0'), 'end_of_support': None,
     'env_reads': 'env-reads-4.7.json'},
)
DEFAULT_LINE = '4.7'

# Lines this collection no longer deploys, with the date Mastodon ends (or ended) their support: named in
# the refusal so that the operator knows how urgent the upgrade is.
UNSUPPORTED_LINES = {'4.4': '2026-12-17'}

_BY_LINE = dict((entry['line'], entry) for entry in LINES)
LINE_ORDER = tuple(entry['line'] for entry in LINES)
SUPPORTED_LINES = dict((entry['line'], entry['newest']) for entry in LINES)
DEFAULT_VERSION = SUPPORTED_LINES[DEFAULT_LINE]

_VERSION_RE = re.compile(r'\Av(?P<major>[0-9]+)\.(?P<minor>[0-9]+)\.(?P<patch>[0-9]+)(?:@sha256:[0-9a-f]{64})?\Z')


def version_tuple(version):
    """(major, minor, patch) of `vX.Y.Z` or `vX.Y.Z@sha256:<64 hex>`, or None for any other text."""
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    return tuple(int(match.group(n)) for n in ('major', 'minor', 'patch')) if match else None


def line_tuple(line):
    """(major, minor) of a line 'X.Y', for ordering lines."""
    return tuple(int(n) for n in line.split('.'))


def line_of(version):
    """The line 'X.Y' of a release tag `vX.Y.Z` (digest pins too), supported or not; None for other text."""
    numbers = version_tuple(version)
    return '%d.%d' % numbers[:2] if numbers else None


def is_supported(line):
    return line in _BY_LINE


def supported_lines():
    """The supported lines, oldest first (for the checks that compare lines, e.g. a skipped minor)."""
    return LINE_ORDER


def newest_known(line):
    """The newest patch release of a supported line that this collection knows, e.g. 'v4.7.6'."""
    return _BY_LINE[line]['newest']


def end_of_support(line):
    """The date ('YYYY-MM-DD') Mastodon ends the support of `line`, or None when not announced or unknown."""
    if line in _BY_LINE:
        return _BY_LINE[line]['end_of_support']
    return UNSUPPORTED_LINES.get(line)


def env_reads_catalogue(line):
    """The file name of the env-reads catalogue of a supported line (under tests/data/mastodon/)."""
    return _BY_LINE[line]['env_reads']


def schema_line(version):
    """The supported line whose environment schema and facts apply to `version`: its own line when supported,
    else the nearest older supported line (the oldest one for older versions, the default for non-release tags)."""
    numbers = version_tuple(version)
    if numbers is None:
        return DEFAULT_LINE
    line = '%d.%d' % numbers[:2]
    if line in _BY_LINE:
        return line
    older = [item for item in LINE_ORDER if line_tuple(item) < numbers[:2]]
    return older[-1] if older else LINE_ORDER[0]


def zero_downtime_floor(line):
    """(schema version, release) of the zero-downtime floor of `line`, e.g. ('20241007071624', '4.3.0') for 4.7:
    a database whose schema is older cannot run the line's pre-deployment migrations while the old version serves
    (lib/tasks/db.rake aborts with SKIP_POST_DEPLOYMENT_MIGRATIONS set). An unsupported line gets the floor of its
    schema_line (a lower bound: a newer line may raise it)."""
    if line not in _BY_LINE:
        line = schema_line('v%s.0' % line) if re.match(r'\A[0-9]+\.[0-9]+\Z', line or '') else DEFAULT_LINE
    return _BY_LINE[line]['floor']
