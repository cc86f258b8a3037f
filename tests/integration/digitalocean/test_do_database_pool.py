# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fediops.mastodon.do_database_pool through ansible-playbook against the DigitalOcean API stand-in.

The stand-in adds users and pools as databases_add_user and databases_add_connectionPool say
(tests/data/digitalocean-openapi/specification/resources/databases/databases_add_user.yml: 201 with the
user and its generated password; databases_add_connectionPool.yml: 201 with the pool and its connections), so
the runs are: check mode (writes nothing: no POST in the stand-in's request log), the first run (changed: one
POST /users, one POST /pools), the second run (not changed, no POST), check mode again (not changed), then
do_database_info reads the application's user from the pool with the NEW user's password, not the admin's.
Bad input fails naming the option before any write.
"""
from __future__ import annotations

import json

import pytest

POOL_TASK = '''
- name: pool
  fediops.mastodon.do_database_pool:
    cluster_name: mastodon-pg
    name: mastodon-app
    db: mastodon_production
    user: mastodon
    mode: transaction
    size: 15
  register: out
'''


class PoolRuns(object):
    def __init__(self, playbook, api):
        self.playbook = playbook
        self.api = api
        self.runs = {}
        self.posts = {}

    def run(self, name, tasks, **kwargs):
        before = len(self.api.requests)
        result = self.playbook(self.api, tasks, **kwargs)
        failed = [(task, res.get('msg')) for task, res in result.task_results() if res.get('failed')]
        assert result.returncode == 0, (failed, result.stderr[-3000:])
        self.runs[name] = result
        self.posts[name] = [(r['method'], r['path'].rsplit('/', 1)[-1], r['body'])
                            for r in self.api.requests[before:] if r['method'] != 'GET']
        return result


@pytest.fixture(scope='module')
def pool_runs(do_playbook_module, do_standin_session):
    api = do_standin_session.spawn()
    runs = PoolRuns(do_playbook_module, api)
    try:
        runs.run('check', POOL_TASK, check=True, diff=True)
        runs.run('first', POOL_TASK, diff=True)
        runs.run('second', POOL_TASK, diff=True)
        runs.run('check-again', POOL_TASK, check=True, diff=True)
        runs.run('app-user', '''
- name: app
  fediops.mastodon.do_database_info:
    cluster_name: mastodon-pg
    app_pool: mastodon-app
    include_passwords: true
    include_pools: false
  register: out
''')
        bad = ''.join('''
- name: %s
  fediops.mastodon.do_database_pool: %s
  register: out
  ignore_errors: true
''' % (name, json.dumps(params)) for name, params in BAD_INPUT)
        runs.run('bad', bad)
        yield runs
    finally:
        api.stop()


BAD_INPUT = [
    ('short-name', dict(cluster_name='mastodon-pg', name='ab', db='mastodon_production', user='bad-user-1')),
    ('no-such-db', dict(cluster_name='mastodon-pg', name='bad-pool', db='nope', user='bad-user-2')),
    ('bad-size', dict(cluster_name='mastodon-pg', name='bad-pool', db='mastodon_production', size=0, user='bad-user-3')),
    ('bad-mode', dict(cluster_name='mastodon-pg', name='bad-pool', db='mastodon_production', mode='batch')),
    ('valkey', dict(cluster_name='mastodon-valkey', name='bad-pool', db='mastodon_production', user='bad-user-4')),
    ('differs', dict(cluster_name='mastodon-pg', name='mastodon-session', db='mastodon_production', user='doadmin',
                     mode='transaction', size=5)),
    ('bad-cluster-id', dict(cluster_id='not-a-uuid', name='bad-pool', db='mastodon_production')),
]


def test_check_mode_writes_nothing_and_predicts_the_change(pool_runs):
    res = pool_runs.runs['check'].result('pool')
    assert res['changed'] is True and res['user_created'] is True
    assert res['diff'] == {'before': {'pool': {}, 'users': []},
                           'after': {'pool': {'name': 'mastodon-app', 'mode': 'transaction', 'size': 15,
                                              'db': 'mastodon_production', 'user': 'mastodon'}, 'users': ['mastodon']}}
    assert pool_runs.posts['check'] == []


def test_first_run_adds_user_then_pool(pool_runs):
    res = pool_runs.runs['first'].result('pool')
    assert res['changed'] is True and res['user_created'] is True
    assert pool_runs.posts['first'] == [
        ('POST', 'users', {'name': 'mastodon'}),
        ('POST', 'pools', {'name': 'mastodon-app', 'mode': 'transaction', 'size': 15, 'db': 'mastodon_production',
                           'user': 'mastodon'})]
    pool = res['pool']
    assert (pool['name'], pool['user'], pool['connection']['port'], pool['connection']['user']) == (
        'mastodon-app', 'mastodon', 25061, 'mastodon')
    assert pool['connection']['uri'].startswith('postgresql://mastodon@')  # no password


def test_second_run_and_check_mode_are_not_changed(pool_runs):
    for name in ('second', 'check-again'):
        res = pool_runs.runs[name].result('pool')
        assert res['changed'] is False and res['user_created'] is False, name
        assert res['diff']['before'] == res['diff']['after'], name
        assert pool_runs.posts[name] == [], name


def test_application_user_comes_from_the_pool_with_its_own_password(pool_runs):
    """The pool's user and its password (from the pool's connection); the admin password is not returned."""
    api = pool_runs.api
    cluster = api.cluster('mastodon-pg')
    user = next(u for u in cluster['users'] if u['name'] == 'mastodon')
    info = pool_runs.runs['app-user'].result('app')['cluster']
    assert info['app_user'] == {'name': 'mastodon', 'role': 'normal', 'source': 'pool', 'pool': 'mastodon-app'}
    assert info['passwords'] == {'app_user': user['password']}
    assert user['password'] != cluster['connection']['password']
    output = pool_runs.runs['app-user'].task_output('app') + pool_runs.runs['app-user'].stderr
    assert cluster['connection']['password'] not in output


def test_no_password_in_pool_module_output(pool_runs):
    cluster = pool_runs.api.cluster('mastodon-pg')
    passwords = [u['password'] for u in cluster['users']]
    for name in ('check', 'first', 'second', 'check-again', 'bad'):
        output = json.dumps(pool_runs.runs[name].data) + pool_runs.runs[name].stderr
        for password in passwords:
            assert password not in output, name


@pytest.mark.parametrize('name,message', [
    ('short-name', 'name: a connection pool name must be 3 to 60 characters'),
    ('no-such-db', "db: database cluster 'mastodon-pg' has no database 'nope'"),
    ('bad-size', 'size must be a positive number'),
    ('bad-mode', 'value of mode must be one of: transaction, session, statement'),
    ('valkey', "database cluster 'mastodon-valkey' is engine valkey"),
    ('differs', "connection pool 'mastodon-session' of 'mastodon-pg' exists with other settings (mode is 'session', "
                "not 'transaction')"),
    ('bad-cluster-id', 'cluster_id must be a database cluster UUID'),
])
def test_bad_input_named_before_any_write(pool_runs, name, message):
    res = pool_runs.runs['bad'].result(name)
    assert res['failed'] and message in res['msg'], res['msg']
    assert pool_runs.posts['bad'] == []
