# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup half of the point-of-no-return gate against the DigitalOcean stand-in over HTTPS: the client's
GET /v2/databases/{uuid}/backups (databases_list_backups) and the gate's verdict for each kind of cluster the
fixtures hold (their answers are validated against the OpenAPI excerpt by test_contract.py)."""
from __future__ import annotations

import datetime

from ansible_collections.fediops.mastodon.plugins.module_utils._backups import DEFAULT_MAX_AGE, do_backup_gate, parse_max_age
from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanClient

MAX_AGE = parse_max_age(DEFAULT_MAX_AGE)


def _client(api):
    return DigitalOceanClient(api.token, base_url=api.base_url, ca_path=api.ca_file, timeout=5, max_retries=2, max_wait=5)


def _gate(api, name):
    now = datetime.datetime.now(datetime.timezone.utc)
    return do_backup_gate(_client(api), api.cluster(name), now, MAX_AGE)


def test_fresh_backup_passes_with_the_restore_commands(do_api):
    ok, message, point = _gate(do_api, 'mastodon-pg')
    assert ok is True, message
    newest = max(b['created_at'] for b in do_api.fixtures['backups'][do_api.cluster('mastodon-pg')['id']]['backups'])
    assert point['created_at'] == newest
    assert '--restore-from-cluster-name mastodon-pg' in point['doctl'] and '--num-nodes 2' in point['doctl']
    assert '"backup_restore": {"database_name": "mastodon-pg", "backup_created_at": "%s"}' % newest in point['api']
    assert [(r['method'], r['path']) for r in do_api.requests] == [
        ('GET', '/v2/databases/%s/backups' % do_api.cluster('mastodon-pg')['id'])]


def test_stale_and_missing_backups_are_refused(do_api):
    ok, message, point = _gate(do_api, 'staging-pg')
    assert ok is False and 'older than migrations_backup_max_age' in message and point is not None
    ok, message, point = _gate(do_api, 'filler-00')
    assert ok is False and point is None
    assert 'has no backup to go back to' in message and 'a backup is running now (36% done)' in message


def test_api_errors_are_refusals(do_api):
    ok, message, point = _gate(do_api, 'mastodon-valkey')  # "Backups are not supported for Caching or Valkey clusters"
    assert ok is False and point is None and 'HTTP 404' in message and 'not supported' in message
    do_api.set_faults({'kind': 'status', 'status': 500, 'path': '/backups$'})
    ok, message, point = _gate(do_api, 'mastodon-pg')
    assert ok is False and 'HTTP 500' in message and 'gave up after 3 attempt(s)' in message
    assert do_api.token not in message
    do_api.set_faults({'kind': 'status', 'status': 401, 'path': '/backups$'})
    ok, message, point = _gate(do_api, 'mastodon-pg')
    assert ok is False and 'HTTP 401' in message and 'check api_token' in message
