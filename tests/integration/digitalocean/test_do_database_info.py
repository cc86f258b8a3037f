# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fediops.mastodon.do_database_info through ansible-playbook against the DigitalOcean API stand-in.

Every case is a host of its own in the inventory (run locally, in parallel) against a stand-in of its
own (its faults, its request log); all the cases run in ONE ansible-playbook, made once per module by
the `info_run` fixture, and each test checks its cases from their own task results and request logs.
"""
from __future__ import annotations

import copy
import json

import pytest


def all_passwords(do_api):
    found = set()
    for cluster in do_api.fixtures['clusters']:
        found.add(cluster['connection']['password'])
    return found


class InfoRun(object):
    """The cases (name -> stand-in, name -> case) and the run's result."""

    def __init__(self, batch):
        self.batch = batch
        self.api = {}
        self.cases = {}
        self.result = None

    def add(self, name, params, faults=(), fixtures=None, **keywords):
        self.api[name] = self.batch.spawn(*faults, fixtures=fixtures)
        self.cases[name] = self.batch.case(self.api[name], params, **keywords)

    def run(self):
        task = self.batch.task('info', 'do_database_info', self.cases, {'check_mode': 'false'})
        self.result = self.batch.run(task, self.cases)

    def res(self, name):
        return self.result.result('info', host=name)

    def count(self, name):
        return len(self.api[name].requests)

    def output_without(self, *names):
        """The run's output (json callback data and stderr) without the cases `names`."""
        data = dict(self.result.data)
        data['plays'] = [dict(play, tasks=[dict(task, hosts={h: r for h, r in task['hosts'].items() if h not in names})
                                           for task in play['tasks']]) for play in data['plays']]
        return json.dumps(data, indent=4, sort_keys=True) + self.result.stderr


@pytest.fixture(scope='module')
def info_run(do_batch):
    run = InfoRun(do_batch)
    pg_id = do_batch.standin.cluster('mastodon-pg')['id']
    run.add('by-id', dict(cluster_id=pg_id), check_mode=True)
    run.add('by-name', dict(cluster_name='mastodon-valkey'))
    run.add('by-tag', dict(tag='mastodon', include_pools=False))
    run.add('by-tag-empty', dict(tag='nothing-tagged'))
    run.add('passwords', dict(cluster_id=pg_id, include_passwords=True))
    k8s = do_batch.standin.fixtures['kubernetes_cluster_id']
    run.add('firewall-admits', dict(cluster_name='mastodon-pg', kubernetes_cluster_id=k8s, include_pools=False))
    run.add('firewall-omits', dict(cluster_name='staging-pg', kubernetes_cluster_id=k8s, include_pools=False))
    run.add('firewall-open', dict(cluster_name='mastodon-valkey', include_firewall=True))
    run.add('redis-url', dict(cluster_name='mastodon-valkey', include_passwords=True))
    legacy = copy.deepcopy(do_batch.standin.fixtures)
    next(c for c in legacy['clusters'] if c['name'] == 'mastodon-valkey')['engine'] = 'redis'
    run.add('legacy-redis', dict(cluster_name='mastodon-valkey', include_passwords=True), fixtures=legacy)
    run.add('fail-k8s-id', dict(cluster_name='mastodon-pg', kubernetes_cluster_id='my-cluster'))
    run.add('fail-app-user-valkey', dict(cluster_name='mastodon-valkey', app_user='mastodon'))
    run.add('fail-pools-404', dict(cluster_name='mastodon-pg'), faults=[{'kind': 'status', 'status': 404, 'path': '/pools$'}])
    run.add('fail-empty-tag', dict(tag=''))
    run.add('fail-exclusive', dict(cluster_id='x', tag='y'))
    run.run()
    return run


def test_run_complete(info_run):
    assert info_run.result.returncode == 0, (info_run.result.stdout[-3000:], info_run.result.stderr[-3000:])
    for name in info_run.cases:
        assert info_run.res(name) is not None
        assert info_run.result.stats[name]['ignored'] == int(name.startswith('fail-')), name


def test_no_password_in_output(do_standin_session, info_run):
    output = info_run.output_without('passwords', 'redis-url', 'legacy-redis')
    assert 'mastodon-pg' in output and 'mastodon-valkey' in output
    for password in all_passwords(do_standin_session):
        assert password not in output


def test_by_id_with_pools_and_standby(do_standin_session, info_run):
    """In check mode (the task's check_mode: true for this case, as ansible-playbook --check sets it)."""
    do_api = do_standin_session
    cluster = do_api.cluster('mastodon-pg')
    res = info_run.res('by-id')
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is False
    info = res['cluster']
    assert res['clusters'] == [info]
    assert (info['id'], info['name'], info['engine'], info['version']) == (cluster['id'], 'mastodon-pg', 'pg', '16')
    for key in ('connection', 'private_connection', 'standby_connection', 'standby_private_connection'):
        conn = info[key]
        assert conn['host'] == cluster[key]['host'] and conn['port'] == 25060 and conn['ssl'] is True
        assert conn['user'] == 'doadmin' and conn['database'] == 'defaultdb'
        assert conn['uri'] == 'postgresql://doadmin@%s:25060/defaultdb?sslmode=require' % conn['host']
    assert [p['name'] for p in info['pools']] == ['mastodon', 'mastodon-session']
    pool = info['pools'][0]
    assert (pool['mode'], pool['size'], pool['db'], pool['user']) == ('transaction', 20, 'mastodon_production', 'doadmin')
    assert pool['connection']['port'] == 25061 and pool['connection']['database'] == 'mastodon'
    assert pool['private_connection']['host'].startswith('private-')
    assert 'passwords' not in info
    text = json.dumps(res)
    # the case's own output (its task's part of the json output, and stderr); test_no_password_in_output
    # scans the whole output but for the case that asks for passwords
    output = info_run.result.task_output('info', host='by-id') + info_run.result.stderr
    for password in all_passwords(do_api):
        assert password not in text and password not in output
    assert [r['path'] for r in info_run.api['by-id'].requests] == [
        '/v2/databases/%s' % cluster['id'], '/v2/databases/%s/pools' % cluster['id']]


def test_by_name_without_standby(info_run):
    info = info_run.res('by-name')['cluster']
    assert info['engine'] == 'valkey' and info['pools'] == []
    assert 'standby_connection' not in info
    assert info['connection']['uri'].startswith('rediss://default@')
    assert info_run.count('by-name') == 1  # one list request, no pools for valkey


def test_by_tag_lists_several(info_run):
    res = info_run.res('by-tag')
    assert sorted(c['name'] for c in res['clusters']) == ['mastodon-pg', 'mastodon-valkey']
    assert 'cluster' not in res
    assert info_run.api['by-tag'].requests[0]['query']['tag_name'] == 'mastodon'
    assert info_run.count('by-tag') == 1
    empty = info_run.res('by-tag-empty')
    assert empty['clusters'] == [] and not empty.get('failed')


def test_passwords_only_on_request(do_standin_session, info_run):
    cluster = do_standin_session.cluster('mastodon-pg')
    info = info_run.res('passwords')['cluster']
    password = cluster['connection']['password']
    assert info['passwords']['connection'] == password
    assert info['passwords']['users'] == {'doadmin': password}
    assert info['passwords']['pools']['mastodon']['connection'] == password
    assert password not in json.dumps({k: v for k, v in info.items() if k != 'passwords'})


def test_info_failures_name_cause(info_run):
    res = info_run.res('fail-pools-404')
    assert res['failed'] and 'connection pools' in res['msg'] and '404' in res['msg']
    assert 'tag must not be empty' in info_run.res('fail-empty-tag')['msg']
    assert 'mutually exclusive' in info_run.res('fail-exclusive')['msg']
    assert info_run.count('fail-empty-tag') == 0 and info_run.count('fail-exclusive') == 0


def test_trusted_sources(do_standin_session, info_run):
    """databases_list_firewall_rules (GET /v2/databases/{uuid}/firewall, responses/firewall_rules.yml): the rules
    as listed; a k8s rule with the cluster's id admits it, a firewall without it names the fix, none is open."""
    api = do_standin_session
    k8s = api.fixtures['kubernetes_cluster_id']
    admits = info_run.res('firewall-admits')['cluster']
    assert [(r['type'], r['value']) for r in admits['firewall_rules']] == [('k8s', k8s), ('ip_addr', '203.0.113.7')]
    assert admits['trusted_sources_problem'] is None
    staging = api.cluster('staging-pg')
    problem = info_run.res('firewall-omits')['cluster']['trusted_sources_problem']
    assert problem == (
        "database cluster 'staging-pg' does not admit the Kubernetes cluster %s: its trusted sources are "
        "ip_addr:203.0.113.7, tag:backend, so the applications in the cluster cannot connect to it. Add the trusted "
        "source of type k8s with value %s: `doctl databases firewalls append %s --rule k8s:%s`, or in the control "
        "panel: Databases > staging-pg > Network Access > Add Trusted Sources > select the Kubernetes cluster"
        % (k8s, k8s, staging['id'], k8s))
    opened = info_run.res('firewall-open')['cluster']
    assert opened['firewall_rules'] == [] and 'trusted_sources_problem' not in opened
    assert [r['path'].rsplit('/', 1)[-1] for r in info_run.api['firewall-admits'].requests][-1] == 'firewall'
    assert info_run.count('firewall-admits') == 2 and info_run.count('firewall-open') == 2  # list + firewall


@pytest.mark.parametrize('case,engine', [('redis-url', 'valkey'), ('legacy-redis', 'redis')])
def test_valkey_and_legacy_redis_url_with_its_password(do_standin_session, info_run, case, engine):
    """Both engines of the cluster model (resources/databases/models/database_cluster.yml: "redis" for Caching,
    "valkey" for Valkey) give a REDIS_URL; neither has pools, so one request (the list by name)."""
    cluster = do_standin_session.cluster('mastodon-valkey')
    info = info_run.res(case)['cluster']
    conn = cluster['private_connection']
    assert info['engine'] == engine and info['pools'] == []
    assert info['passwords']['redis_url']['private_connection'] == 'rediss://default:%s@%s:25061' % (conn['password'], conn['host'])
    assert info['passwords']['redis_url']['connection'].endswith('@%s:25061' % cluster['connection']['host'])
    assert info_run.count(case) == 1


def test_new_options_fail_naming_the_option(info_run):
    assert 'kubernetes_cluster_id must be a Kubernetes cluster UUID' in info_run.res('fail-k8s-id')['msg']
    assert info_run.count('fail-k8s-id') == 0
    assert "'mastodon-valkey' is engine valkey" in info_run.res('fail-app-user-valkey')['msg']
