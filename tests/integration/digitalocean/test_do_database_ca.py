# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fediops.mastodon.do_database_ca through ansible-playbook against the DigitalOcean API stand-in."""
from __future__ import annotations

import os
import stat

import pytest

CA_PATH = r'/v2/databases/[^/]+/ca$'
LIST_PATH = r'^/v2/databases/?$'


def ca_task(name='ca', **params):
    lines = ''.join('    %s: %s\n' % (k, v) for k, v in params.items())
    return '- name: %s\n  fediops.mastodon.do_database_ca:\n%s  register: out\n' % (name, lines)


def test_by_id_writes_then_is_idempotent(do_api, do_playbook, dest_dir):
    cluster = do_api.cluster('mastodon-pg')
    dest = dest_dir / 'ca.pem'
    tasks = ca_task(cluster_id=cluster['id'], dest=str(dest))

    first = do_playbook(tasks)
    assert first.returncode == 0, first.stdout + first.stderr
    res = first.result('ca')
    assert res['changed'] is True
    assert dest.read_text() == do_api.ca_pem('mastodon-pg')
    assert res['pem'] == dest.read_text()
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o644
    assert res['cluster'] == {'id': cluster['id'], 'name': None, 'engine': None}
    assert res['subject'] == 'CN=%s Project CA' % cluster['id']
    assert len(res['sha256_fingerprint'].split(':')) == 32
    assert res['not_after'].endswith('+00:00')
    assert do_api.count() == 1 and do_api.count(CA_PATH) == 1, do_api.requests

    second = do_playbook(tasks)
    assert second.returncode == 0
    assert second.result('ca')['changed'] is False
    assert do_api.count() == 2


def test_by_name_lists_then_fetches(do_api, do_playbook, dest_dir):
    dest = dest_dir / 'ca.pem'
    result = do_playbook(ca_task(cluster_name='mastodon-valkey', dest=str(dest)))
    assert result.returncode == 0, result.stdout
    res = result.result('ca')
    assert res['changed'] is True
    cluster = do_api.cluster('mastodon-valkey')
    assert res['cluster'] == {'id': cluster['id'], 'name': 'mastodon-valkey', 'engine': 'valkey'}
    assert dest.read_text() == do_api.ca_pem('mastodon-valkey')
    assert [r['path'].rstrip('/') for r in do_api.requests] == ['/v2/databases', '/v2/databases/%s/ca' % cluster['id']]
    assert do_api.requests[0]['query'].get('per_page') == '200'


def test_by_name_follows_pagination(do_api, do_playbook):
    do_api.set_max_per_page(2)
    result = do_playbook(ca_task(cluster_name='filler-02'))
    assert result.returncode == 0, result.stdout
    assert result.result('ca')['cluster']['name'] == 'filler-02'
    pages = [r['query'].get('page', '1') for r in do_api.requests if r['path'] == '/v2/databases']
    assert pages == ['1', '2', '3']


def test_check_mode_writes_nothing(do_api, do_playbook, dest_dir):
    dest = dest_dir / 'ca.pem'
    tasks = ca_task(cluster_id=do_api.cluster('mastodon-pg')['id'], dest=str(dest))
    result = do_playbook(tasks, check=True, diff=True)
    assert result.returncode == 0, result.stdout
    res = result.result('ca')
    assert res['changed'] is True
    assert res['diff']['after'] == do_api.ca_pem('mastodon-pg') and res['diff']['before'] == ''
    assert not dest.exists()
    assert os.listdir(dest_dir) == []

    dest.write_text('old content\n')
    os.chmod(dest, 0o600)
    result = do_playbook(tasks, check=True, diff=True)
    assert result.result('ca')['changed'] is True
    assert result.result('ca')['diff']['before'] == 'old content\n'
    assert dest.read_text() == 'old content\n'
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600


def test_attributes_only_change(do_api, do_playbook, dest_dir):
    dest = dest_dir / 'ca.pem'
    dest.write_text(do_api.ca_pem('mastodon-pg'))
    os.chmod(dest, 0o600)
    tasks = ca_task(cluster_id=do_api.cluster('mastodon-pg')['id'], dest=str(dest), mode="'0640'")
    result = do_playbook(tasks, check=True)
    assert result.result('ca')['changed'] is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    result = do_playbook(tasks)
    assert result.result('ca')['changed'] is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o640
    assert do_playbook(tasks).result('ca')['changed'] is False


def test_replaces_changed_content_atomically(do_api, do_playbook, dest_dir):
    dest = dest_dir / 'ca.pem'
    dest.write_text(do_api.ca_pem('staging-pg'))
    inode = os.stat(dest).st_ino
    result = do_playbook(ca_task(cluster_name='mastodon-pg', dest=str(dest)), diff=True)
    assert result.result('ca')['changed'] is True
    assert dest.read_text() == do_api.ca_pem('mastodon-pg')
    assert os.stat(dest).st_ino != inode  # renamed into place, not rewritten
    assert sorted(os.listdir(dest_dir)) == ['ca.pem']


def test_expiring_ca_warns(do_api, do_playbook, dest_dir):
    do_api.set_faults({'kind': 'ca', 'variant': 'expiring'})
    result = do_playbook(ca_task(cluster_id=do_api.cluster('mastodon-pg')['id'], dest=str(dest_dir / 'ca.pem')))
    assert result.returncode == 0, result.stdout
    res = result.result('ca')
    assert res['changed'] is True
    assert any('expires on' in w and ('in 9 day' in w or 'in 10 day' in w) for w in res['warnings']), res.get('warnings')


def test_rate_limit_burst_survived(do_api, do_playbook, dest_dir):
    do_api.set_faults({'kind': 'rate_limit', 'retry_after': 1, 'count': 2, 'path': CA_PATH},
                      {'kind': 'rate_limit', 'reset_in': 1, 'count': 1, 'path': LIST_PATH})
    result = do_playbook(ca_task(cluster_name='mastodon-pg', dest=str(dest_dir / 'ca.pem')))
    assert result.returncode == 0, result.stdout
    assert result.result('ca')['changed'] is True
    assert do_api.count(LIST_PATH) == 2
    assert do_api.count(CA_PATH) == 3


def test_server_errors_retried_with_backoff(do_api, do_playbook, dest_dir):
    do_api.set_faults({'kind': 'status', 'status': 500, 'count': 2})
    result = do_playbook(ca_task(cluster_id=do_api.cluster('mastodon-pg')['id'], dest=str(dest_dir / 'ca.pem')))
    assert result.returncode == 0, result.stdout
    assert do_api.count(CA_PATH) == 3


def test_slow_answer_retried_after_timeout(do_api, do_playbook, dest_dir):
    do_api.set_faults({'kind': 'slow', 'delay': 3, 'count': 1})
    result = do_playbook(ca_task(cluster_id=do_api.cluster('mastodon-pg')['id'], dest=str(dest_dir / 'ca.pem')),
                         defaults={'timeout': 1})
    assert result.returncode == 0, result.stdout
    assert do_api.count(CA_PATH) == 2


# ---- faults and bad input: each fails with a message naming the cause, dest untouched ----------------

OLD = b'# operator-managed file, must survive failures\n'

FAULT_CASES = [
    # id, fault rules, task parameters (dest added), extra module_defaults, expected substrings of msg
    ('unauthorized', [{'kind': 'status', 'status': 401}], {}, {}, ['401', 'unauthorized', 'Unable to authenticate', 'request_id']),
    ('forbidden', [{'kind': 'status', 'status': 403}], {}, {}, ['403', 'forbidden', 'scope']),
    ('unknown-cluster', [], {'cluster_id': '00000000-0000-4000-8000-000000000000'}, {}, ['404', 'not_found']),
    ('unknown-name', [], {'cluster_name': 'no-such-db'}, {}, ['no database cluster named', 'no-such-db', 'mastodon-pg']),
    ('server-errors-exhausted', [{'kind': 'status', 'status': 500}], {}, {'max_retries': 2},
     ['500', 'server_error', 'gave up after 3 attempt']),
    ('rate-limit-beyond-bound', [{'kind': 'rate_limit', 'retry_after': 120}], {}, {},
     ['429', 'too_many_requests', 'rate limited', 'wait 120 s', 'max_wait 10']),
    ('rate-limit-reset-beyond-bound', [{'kind': 'rate_limit', 'reset_in': 300}], {}, {},
     ['429', 'rate limited', 'max_wait 10']),
    ('rate-limit-retries-exhausted', [{'kind': 'rate_limit', 'retry_after': 0}], {}, {'max_retries': 1},
     ['429', 'rate limited', 'max_retries 1', '2 attempt']),
    ('truncated-json', [{'kind': 'truncated_json'}], {}, {}, ['malformed or truncated JSON']),
    ('malformed-json', [{'kind': 'malformed_json'}], {}, {}, ['malformed or truncated JSON']),
    ('html-bad-gateway', [{'kind': 'html', 'status': 502}], {}, {'max_retries': 1}, ['502', 'Bad Gateway']),
    ('slow-beyond-timeout', [{'kind': 'slow', 'delay': 4}], {}, {'timeout': 1, 'max_retries': 1},
     ['failed after 2 attempt', 'Timeout']),
    ('disconnect', [{'kind': 'disconnect'}], {}, {'max_retries': 1}, ['failed after 2 attempt', 'Connection']),
    ('bad-base64', [{'kind': 'ca', 'variant': 'bad_base64'}], {}, {}, ['not valid base64']),
    ('not-pem', [{'kind': 'ca', 'variant': 'not_pem'}], {}, {}, ['not a PEM certificate']),
    ('garbage-pem', [{'kind': 'ca', 'variant': 'garbage_pem'}], {}, {}, ['not a parseable X.509 certificate']),
    ('non-ca-certificate', [{'kind': 'ca', 'variant': 'non_ca'}], {}, {}, ['not a CA certificate', 'CA:TRUE']),
    ('expired-ca', [{'kind': 'ca', 'variant': 'expired'}], {}, {}, ['expired on']),
    ('not-yet-valid-ca', [{'kind': 'ca', 'variant': 'not_yet_valid'}], {}, {}, ['not valid before']),
    ('bad-cluster-id', [], {'cluster_id': 'not-a-uuid'}, {}, ['cluster_id must be a database cluster UUID', 'not-a-uuid']),
    ('dest-dir-missing', [], {'dest': '/nonexistent-dir/ca.pem'}, {}, ['dest: directory /nonexistent-dir does not exist']),
    ('bad-base-url', [], {}, {'api_base_url': 'ftp://example.invalid'}, ['api_base_url must be an http(s) URL']),
    ('api-ca-untrusted', [], {}, {'ca_path': '/etc/ssl/certs/ca-certificates.crt'}, ['TLS error', 'ca_path']),
    ('both-selectors', [], {'cluster_name': 'mastodon-pg'}, {}, ['mutually exclusive', 'cluster_id', 'cluster_name']),
]


@pytest.mark.parametrize('case_id,faults,params,defaults,expected', FAULT_CASES, ids=[c[0] for c in FAULT_CASES])
def test_failure_names_cause_and_keeps_dest(do_api, do_playbook, dest_dir, case_id, faults, params, defaults, expected):
    dest = dest_dir / 'ca.pem'
    dest.write_bytes(OLD)
    os.chmod(dest, 0o600)
    before = os.stat(dest)
    task = {'cluster_id': do_api.cluster('mastodon-pg')['id'], 'dest': str(dest)}
    if case_id == 'unknown-name':
        del task['cluster_id']
    task.update(params)
    do_api.set_faults(*faults)
    result = do_playbook(ca_task(**task), defaults=defaults)
    assert result.returncode != 0, case_id
    res = result.result('ca')
    assert res.get('failed') is True
    for text in expected:
        assert text in res['msg'], (case_id, text, res['msg'])
    assert do_api.token not in result.stdout + result.stderr
    assert dest.read_bytes() == OLD
    after = os.stat(dest)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (before.st_ino, before.st_mode, before.st_mtime_ns)
    assert sorted(os.listdir(dest_dir)) == ['ca.pem']


def test_missing_token_names_the_option(do_api, do_playbook):
    result = do_playbook(ca_task(cluster_id=do_api.cluster('mastodon-pg')['id']), token_in_env=False)
    assert result.returncode != 0
    assert 'api_token is missing' in result.result('ca')['msg']
    assert 'DIGITALOCEAN_ACCESS_TOKEN' in result.result('ca')['msg']
    assert do_api.count() == 0


def test_wrong_token_gets_401_body(do_api, do_playbook):
    result = do_playbook(ca_task(cluster_id=do_api.cluster('mastodon-pg')['id']), token_in_env=False,
                         env={'DO_API_TOKEN': 'standin-wrong-token'})
    res = result.result('ca')
    assert res['status'] == 401 and res['error_id'] == 'unauthorized' and res['request_id']
    assert 'standin-wrong-token' not in result.stdout + result.stderr
