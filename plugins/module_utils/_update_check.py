# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Newer Mastodon releases, from the update check Mastodon's admin UI uses.

The contract is Mastodon's own client (app/services/software_update_check_service.rb:21-25, 38-52;
app/models/software_update.rb): ``GET <url>?version=<X.Y.Z>`` with ``Accept: application/json``, only a 200 is
used, the answer is ``{"updatesAvailable": [{"version", "urgent", "type", "releaseNotes"}]}`` (type: patch, minor
or major; urgent marks security releases), and an update is pending when its version is newer than the running one
in ``Gem::Version`` order. The URL is Mastodon's ``UPDATE_CHECK_URL`` (default below); empty disables the check.

``check_updates`` never fails: an unreachable URL, another status, or an answer of another shape gives a warning
and no update, because a status report must not break on a third-party service.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.
"""

from __future__ import annotations

import functools
import json
import re
from urllib.parse import urlencode, urlsplit, urlunsplit

from ansible.module_utils.urls import open_url

DEFAULT_URL = 'https://api.joinmastodon.org/update-check'
UPDATE_TYPES = ('patch', 'minor', 'major')
_RELEASE = re.compile(r'\Av?(\d+\.\d+\.\d+)')


def gem_segments(version):
    """Gem::Version's segments of a version: numbers as ints, letters as strings ("4.7.0-beta.1" -> [4, 7, 0, 'pre',
    'beta', 1]: Gem::Version reads "-" as ".pre.")."""
    text = str(version).strip()
    if text[:1] in ('v', 'V'):
        text = text[1:]
    text = text.split('+', 1)[0].replace('-', '.pre.')
    return [int(part) if part.isdigit() else part for part in re.findall(r'[0-9]+|[A-Za-z]+', text)]


def compare_versions(left, right):
    """-1, 0 or 1 as Gem::Version#<=>: segment by segment, missing ones are 0, a letter segment (a pre-release)
    sorts before any number, so 4.7.0.beta1 < 4.7.0 < 4.7.0.1."""
    a, b = gem_segments(left), gem_segments(right)
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else 0
        y = b[index] if index < len(b) else 0
        if x == y:
            continue
        if isinstance(x, str) != isinstance(y, str):
            return -1 if isinstance(x, str) else 1
        return -1 if x < y else 1
    return 0


def release_of(version):
    """The X.Y.Z Mastodon sends as ?version= (v4.7.6 -> 4.7.6, 4.7.0-beta.1 -> 4.7.0), or None for a tag that is no
    version (latest, a digest)."""
    match = _RELEASE.match(str(version or '').strip())
    return match.group(1) if match else None


def _result(available=(), warning=None):
    available = sorted(available, key=functools.cmp_to_key(lambda a, b: compare_versions(a['version'], b['version'])),
                       reverse=True)
    return dict(available=available, urgent=any(u['urgent'] for u in available), warning=warning)


def parse_answer(data, running_version):
    """The pending updates in a decoded answer, and a warning for what was not understood.

    Returns (updates, warning); updates are {version, urgent, type, release_notes}, newer than running_version.
    """
    if not isinstance(data, dict) or not isinstance(data.get('updatesAvailable'), list):
        return [], 'the answer has no updatesAvailable list'
    updates, skipped = [], 0
    for item in data['updatesAvailable']:
        version = item.get('version') if isinstance(item, dict) else None
        if not isinstance(version, str) or release_of(version) is None:
            skipped += 1
            continue
        if compare_versions(version, running_version) <= 0:
            continue
        kind = item.get('type')
        notes = item.get('releaseNotes')
        updates.append(dict(version=version, urgent=item.get('urgent') is True,
                            type=kind if kind in UPDATE_TYPES else None,
                            release_notes=notes if isinstance(notes, str) else None))
    warning = '%d entr%s without a version were left out' % (skipped, 'y' if skipped == 1 else 'ies') if skipped else None
    return updates, warning


def check_url(url, version):
    """url with ?version=X.Y.Z added to its query (kept otherwise)."""
    parts = urlsplit(url)
    query = parts.query + ('&' if parts.query else '') + urlencode(dict(version=version))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ''))


def check_updates(url, running_version, timeout=10, validate_certs=True, ca_path=None, opener=open_url):
    """{'available': [update, newest first], 'urgent': bool, 'warning': str or None}; never raises.

    url: the update check (empty or None: disabled, no request, no warning); running_version: the image tag the
    deployment runs (v4.7.6); timeout: seconds for the whole request. An update: {version, urgent, type,
    release_notes}.
    """
    if not url:
        return _result()
    where = urlsplit(url)
    if where.scheme not in ('http', 'https') or not where.netloc:
        return _result(warning='update check skipped: the URL must be http(s)://host/path')
    release = release_of(running_version)
    if release is None:
        return _result(warning='update check skipped: the running version %r is not a release (X.Y.Z)' % (running_version,))
    target = check_url(url, release)
    label = '%s://%s%s' % (where.scheme, where.netloc, where.path)
    try:
        response = opener(target, method='GET', headers={'Accept': 'application/json'}, timeout=timeout,
                          validate_certs=validate_certs, ca_path=ca_path, follow_redirects='none',
                          http_agent='fediops.mastodon')
        status = response.getcode()
        raw = response.read()
    except Exception as exc:  # pylint: disable=broad-except
        # urllib's HTTPError (any status but 2xx), URLError, timeouts, TLS errors: all mean "no answer to use"
        code = getattr(exc, 'code', None)
        reason = 'HTTP %s' % code if code else '%s: %s' % (type(exc).__name__, exc)
        return _result(warning='update check %s failed: %s' % (label, reason))
    if status != 200:  # Mastodon uses only a 200 (software_update_check_service.rb)
        return _result(warning='update check %s failed: HTTP %s' % (label, status))
    try:
        data = json.loads(raw.decode('utf-8'))
    except (ValueError, UnicodeDecodeError):
        return _result(warning='update check %s failed: the answer is not JSON' % label)
    updates, problem = parse_answer(data, running_version)
    return _result(updates, 'update check %s: %s' % (label, problem) if problem else None)
