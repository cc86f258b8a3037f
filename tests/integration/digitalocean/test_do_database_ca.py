# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fediops.mastodon.do_database_ca through ansible-playbook against the DigitalOcean API stand-in.

Every case is a host of its own in the inventory (run locally; the cases of a run go in parallel),
with a stand-in of its own (its faults, its request log) and a dest directory of its own. The cases
share four ansible-playbook runs, made once per module by the `ca_runs` fixture, and each case is
checked by its own test from its own task result:

  check   (--check)          check mode: new file, existing file, attributes-only change (first step);
  main                       first runs of everything else, and every failure case;
  rerun                      second runs (idempotence: nothing changes);
  token   (no token in env)  missing and wrong token.

The files and request logs are recorded after every run, so each test checks what it checked when it
made its own runs.
"""
from __future__ import annotations

import os
import re
import stat

import pytest

CA_PATH = r'/v2/databases/[^/]+/ca$'
LIST_PATH = r'^/v2/databases/?$'


class CaRuns(object):
    """The cases: their stand-ins and dest files, the cases of each run, the runs' results, and the
    files and request logs as they were after each run."""

    KEYWORDS = {'diff': 'false', 'environment': '{}'}
    # cases that wait (retries, timeouts, rate limits) go first, so that the others run meanwhile
    WAITING = ('rate-limit-burst', 'slow-beyond-timeout', 'slow', 'server-errors', 'server-errors-exhausted',
               'html-bad-gateway', 'disconnect', 'rate-limit-retries-exhausted')

    def __init__(self, batch):
        self.batch = batch
        self.api = {}
        self.dest = {}
        self.cases = {}
        self.results = {}
        self.files = {}
        self.requests = {}
        self.replace_inode = None
        self.fault_stat = {}

    def case(self, name, *faults, **config):
        self.api[name] = self.batch.spawn(*faults, **config)
        self.dest[name] = self.batch.directory(name) / 'ca.pem'
        return self.api[name], self.dest[name]

    def add(self, label, name, params, defaults=None, **keywords):
        self.cases.setdefault(label, {})[name] = self.batch.case(self.api[name], params, defaults, **keywords)

    def run(self, label, **kwargs):
        cases = dict(sorted(self.cases[label].items(), key=lambda item: item[0] not in self.WAITING))
        task = self.batch.task('ca', 'do_database_ca', cases, self.KEYWORDS)
        self.results[label] = self.batch.run(task, cases, **kwargs)
        for name, api in self.api.items():
            self.requests[(label, name)] = api.requests
            dest = self.dest[name]
            if dest.exists():
                self.files[(label, name)] = (dest.read_bytes(), os.stat(dest))
        return self.results[label]

    def result(self, label, name):
        return self.results[label].result('ca', host=name)

    def count(self, label, name, path_regex=None):
        return len([r for r in self.requests[(label, name)] if path_regex is None or re.search(path_regex, r['path'])])


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
     ['429', 'rate limited', '1 retries of max_retries', '2 attempt']),
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


@pytest.fixture(scope='module')
def ca_runs(do_batch):
    runs = CaRuns(do_batch)
    pg_id = do_batch.standin.cluster('mastodon-pg')['id']
    pem = do_batch.standin.ca_pem

    # check mode: a new file, an existing file, and the first step of an attributes-only change
    api, dest = runs.case('check-new')
    runs.add('check', 'check-new', dict(cluster_id=pg_id, dest=str(dest)), diff=True)
    api, dest = runs.case('check-existing')
    dest.write_text('old content\n')
    os.chmod(dest, 0o600)
    runs.add('check', 'check-existing', dict(cluster_id=pg_id, dest=str(dest)), diff=True)
    api, dest = runs.case('attributes')
    dest.write_text(pem('mastodon-pg'))
    os.chmod(dest, 0o600)
    attributes = dict(cluster_id=pg_id, dest=str(dest), mode='0640')
    runs.add('check', 'attributes', attributes)

    # main: first runs
    api, dest = runs.case('by-id')
    by_id = dict(cluster_id=pg_id, dest=str(dest))
    runs.add('main', 'by-id', by_id)
    api, dest = runs.case('by-name')
    runs.add('main', 'by-name', dict(cluster_name='mastodon-valkey', dest=str(dest)))
    runs.case('pagination', max_per_page=2)
    runs.add('main', 'pagination', dict(cluster_name='filler-02'))
    runs.add('main', 'attributes', attributes)
    api, dest = runs.case('replace')
    dest.write_text(pem('staging-pg'))
    runs.replace_inode = os.stat(dest).st_ino
    runs.add('main', 'replace', dict(cluster_name='mastodon-pg', dest=str(dest)), diff=True)
    api, dest = runs.case('expiring', {'kind': 'ca', 'variant': 'expiring'})
    runs.add('main', 'expiring', dict(cluster_id=pg_id, dest=str(dest)))
    api, dest = runs.case('rate-limit-burst', {'kind': 'rate_limit', 'retry_after': 1, 'count': 2, 'path': CA_PATH},
                          {'kind': 'rate_limit', 'reset_in': 1, 'count': 1, 'path': LIST_PATH})
    runs.add('main', 'rate-limit-burst', dict(cluster_name='mastodon-pg', dest=str(dest)))
    api, dest = runs.case('server-errors', {'kind': 'status', 'status': 500, 'count': 2})
    runs.add('main', 'server-errors', dict(cluster_id=pg_id, dest=str(dest)))
    api, dest = runs.case('slow', {'kind': 'slow', 'delay': 3, 'count': 1})
    runs.add('main', 'slow', dict(cluster_id=pg_id, dest=str(dest)), defaults={'timeout': 1})

    # main: every failure case, against an operator's file that must survive
    for case_id, faults, params, defaults, dummy in FAULT_CASES:
        api, dest = runs.case(case_id, *faults)
        dest.write_bytes(OLD)
        os.chmod(dest, 0o600)
        runs.fault_stat[case_id] = os.stat(dest)
        task = {'cluster_id': pg_id, 'dest': str(dest)}
        if case_id == 'unknown-name':
            del task['cluster_id']
        task.update(params)
        runs.add('main', case_id, task, defaults=defaults)

    # rerun: second runs
    runs.add('rerun', 'by-id', by_id)
    runs.add('rerun', 'attributes', attributes)

    # token: none in the environment of ansible-playbook
    runs.case('missing-token')
    runs.add('token', 'missing-token', dict(cluster_id=pg_id))
    runs.case('wrong-token')
    runs.add('token', 'wrong-token', dict(cluster_id=pg_id), environment={'DO_API_TOKEN': 'standin-wrong-token'})

    runs.run('check', check=True)
    runs.run('main')
    runs.run('rerun')
    runs.run('token', token_in_env=False)
    return runs


def test_runs_complete(ca_runs):
    """Every run went through all its cases; only the failure cases failed (each is checked by its own test)."""
    failing = {c[0] for c in FAULT_CASES} | {'missing-token', 'wrong-token'}
    for label, cases in ca_runs.cases.items():
        result = ca_runs.results[label]
        assert result.returncode == 0, (label, result.stdout[-3000:], result.stderr[-3000:])
        for name in cases:
            assert ca_runs.result(label, name) is not None
            assert result.stats[name]['ignored'] == int(name in failing), (label, name)
    assert sorted(ca_runs.cases['main']) == sorted(n for n in ca_runs.api if n not in ('check-new', 'check-existing', 'missing-token', 'wrong-token'))


def test_no_token_in_any_output(ca_runs, do_standin_session):
    for label, result in sorted(ca_runs.results.items()):
        assert do_standin_session.token not in result.stdout + result.stderr, label
        assert 'standin-wrong-token' not in result.stdout + result.stderr, label


def test_by_id_writes_then_is_idempotent(ca_runs, do_standin_session):
    cluster = do_standin_session.cluster('mastodon-pg')
    res = ca_runs.result('main', 'by-id')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    content, mode = ca_runs.files[('main', 'by-id')][0].decode(), ca_runs.files[('main', 'by-id')][1].st_mode
    assert content == do_standin_session.ca_pem('mastodon-pg')
    assert res['pem'] == content
    assert stat.S_IMODE(mode) == 0o644
    assert res['cluster'] == {'id': cluster['id'], 'name': None, 'engine': None}
    assert res['subject'] == 'CN=%s Project CA' % cluster['id']
    assert len(res['sha256_fingerprint'].split(':')) == 32
    assert res['not_after'].endswith('+00:00')
    assert ca_runs.count('main', 'by-id') == 1 and ca_runs.count('main', 'by-id', CA_PATH) == 1, ca_runs.requests[('main', 'by-id')]

    second = ca_runs.result('rerun', 'by-id')
    assert not second.get('failed'), second.get('msg')
    assert second['changed'] is False
    assert ca_runs.count('rerun', 'by-id') == 2
    assert ca_runs.files[('rerun', 'by-id')][0].decode() == content


def test_by_name_lists_then_fetches(ca_runs, do_standin_session):
    res = ca_runs.result('main', 'by-name')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    cluster = do_standin_session.cluster('mastodon-valkey')
    assert res['cluster'] == {'id': cluster['id'], 'name': 'mastodon-valkey', 'engine': 'valkey'}
    assert ca_runs.dest['by-name'].read_text() == do_standin_session.ca_pem('mastodon-valkey')
    requests = ca_runs.requests[('main', 'by-name')]
    assert [r['path'].rstrip('/') for r in requests] == ['/v2/databases', '/v2/databases/%s/ca' % cluster['id']]
    assert requests[0]['query'].get('per_page') == '200'


def test_by_name_follows_pagination(ca_runs, do_standin_session):
    res = ca_runs.result('main', 'pagination')
    assert not res.get('failed'), res.get('msg')
    assert res['cluster']['name'] == 'filler-02'
    pages = [r['query'].get('page', '1') for r in ca_runs.requests[('main', 'pagination')] if r['path'] == '/v2/databases']
    # Two clusters a page (max_per_page=2), every page read (a name is looked up in the whole list).
    count = (len(do_standin_session.fixtures['clusters']) + 1) // 2
    assert count >= 3 and pages == [str(page) for page in range(1, count + 1)]


def test_check_mode_writes_nothing(ca_runs, do_standin_session):
    res = ca_runs.result('check', 'check-new')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    assert res['diff']['after'] == do_standin_session.ca_pem('mastodon-pg') and res['diff']['before'] == ''
    dest = ca_runs.dest['check-new']
    assert not dest.exists()
    assert os.listdir(dest.parent) == []

    res = ca_runs.result('check', 'check-existing')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    assert res['diff']['before'] == 'old content\n'
    content, after = ca_runs.files[('check', 'check-existing')]
    assert content == b'old content\n'
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert ca_runs.dest['check-existing'].read_text() == 'old content\n'


def test_attributes_only_change(ca_runs):
    res = ca_runs.result('check', 'attributes')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    assert stat.S_IMODE(ca_runs.files[('check', 'attributes')][1].st_mode) == 0o600
    res = ca_runs.result('main', 'attributes')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    assert stat.S_IMODE(ca_runs.files[('main', 'attributes')][1].st_mode) == 0o640
    res = ca_runs.result('rerun', 'attributes')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is False


def test_replaces_changed_content_atomically(ca_runs, do_standin_session):
    res = ca_runs.result('main', 'replace')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    dest = ca_runs.dest['replace']
    assert dest.read_text() == do_standin_session.ca_pem('mastodon-pg')
    assert os.stat(dest).st_ino != ca_runs.replace_inode  # renamed into place, not rewritten
    assert sorted(os.listdir(dest.parent)) == ['ca.pem']


def test_expiring_ca_warns(ca_runs):
    res = ca_runs.result('main', 'expiring')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    assert any('expires on' in w and ('in 9 day' in w or 'in 10 day' in w) for w in res['warnings']), res.get('warnings')


def test_rate_limit_burst_survived(ca_runs):
    res = ca_runs.result('main', 'rate-limit-burst')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    assert ca_runs.count('main', 'rate-limit-burst', LIST_PATH) == 2
    assert ca_runs.count('main', 'rate-limit-burst', CA_PATH) == 3


def test_server_errors_retried_with_backoff(ca_runs):
    res = ca_runs.result('main', 'server-errors')
    assert not res.get('failed'), res.get('msg')
    assert ca_runs.count('main', 'server-errors', CA_PATH) == 3


def test_slow_answer_retried_after_timeout(ca_runs):
    res = ca_runs.result('main', 'slow')
    assert not res.get('failed'), res.get('msg')
    assert ca_runs.count('main', 'slow', CA_PATH) == 2


@pytest.mark.parametrize('case_id,faults,params,defaults,expected', FAULT_CASES, ids=[c[0] for c in FAULT_CASES])
def test_failure_names_cause_and_keeps_dest(ca_runs, do_standin_session, case_id, faults, params, defaults, expected):
    result = ca_runs.results['main']
    res = ca_runs.result('main', case_id)
    assert res.get('failed') is True, res
    for text in expected:
        assert text in res['msg'], (case_id, text, res['msg'])
    # the case's own output (its task's part of the json output, and stderr); test_no_token_in_any_output
    # scans the whole output of every run
    assert do_standin_session.token not in result.task_output('ca', host=case_id) + result.stderr
    dest = ca_runs.dest[case_id]
    assert dest.read_bytes() == OLD
    before, after = ca_runs.fault_stat[case_id], os.stat(dest)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (before.st_ino, before.st_mode, before.st_mtime_ns)
    assert sorted(os.listdir(dest.parent)) == ['ca.pem']


def test_missing_token_names_the_option(ca_runs):
    res = ca_runs.result('token', 'missing-token')
    assert res.get('failed') is True
    assert 'api_token is missing' in res['msg']
    assert 'DIGITALOCEAN_ACCESS_TOKEN' in res['msg']
    assert ca_runs.count('token', 'missing-token') == 0


def test_wrong_token_gets_401_body(ca_runs):
    result = ca_runs.results['token']
    res = ca_runs.result('token', 'wrong-token')
    assert res['status'] == 401 and res['error_id'] == 'unauthorized' and res['request_id']
    assert ca_runs.count('token', 'wrong-token') >= 1
    assert 'standin-wrong-token' not in result.task_output('ca', host='wrong-token') + result.stderr
