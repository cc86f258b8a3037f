# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fediops.mastodon.do_database_info through ansible-playbook against the DigitalOcean API stand-in."""
from __future__ import annotations

import json


def info_task(name='info', **params):
    lines = ''.join('    %s: %s\n' % (k, v) for k, v in params.items())
    return '- name: %s\n  fediops.mastodon.do_database_info:\n%s  register: out\n' % (name, lines)


def all_passwords(do_api):
    found = set()
    for cluster in do_api.fixtures['clusters']:
        found.add(cluster['connection']['password'])
    return found


def test_by_id_with_pools_and_standby(do_api, do_playbook):
    cluster = do_api.cluster('mastodon-pg')
    result = do_playbook(info_task(cluster_id=cluster['id']), check=True)
    assert result.returncode == 0, result.stdout
    res = result.result('info')
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
    for password in all_passwords(do_api):
        assert password not in text and password not in result.stdout
    assert [r['path'] for r in do_api.requests] == ['/v2/databases/%s' % cluster['id'], '/v2/databases/%s/pools' % cluster['id']]


def test_by_name_without_standby(do_api, do_playbook):
    result = do_playbook(info_task(cluster_name='mastodon-valkey'))
    info = result.result('info')['cluster']
    assert info['engine'] == 'valkey' and info['pools'] == []
    assert 'standby_connection' not in info
    assert info['connection']['uri'].startswith('rediss://default@')
    assert do_api.count() == 1  # one list request, no pools for valkey


def test_by_tag_lists_several(do_api, do_playbook):
    result = do_playbook(info_task(tag='mastodon', include_pools='false'))
    res = result.result('info')
    assert sorted(c['name'] for c in res['clusters']) == ['mastodon-pg', 'mastodon-valkey']
    assert 'cluster' not in res
    assert do_api.requests[0]['query']['tag_name'] == 'mastodon'
    assert do_api.count() == 1
    empty = do_playbook(info_task(tag='nothing-tagged')).result('info')
    assert empty['clusters'] == [] and not empty.get('failed')


def test_passwords_only_on_request(do_api, do_playbook):
    cluster = do_api.cluster('mastodon-pg')
    result = do_playbook(info_task(cluster_id=cluster['id'], include_passwords='true'))
    info = result.result('info')['cluster']
    password = cluster['connection']['password']
    assert info['passwords']['connection'] == password
    assert info['passwords']['users'] == {'doadmin': password}
    assert info['passwords']['pools']['mastodon']['connection'] == password
    assert password not in json.dumps({k: v for k, v in info.items() if k != 'passwords'})


def test_info_failures_name_cause(do_api, do_playbook):
    do_api.set_faults({'kind': 'status', 'status': 404, 'path': '/pools$'})
    result = do_playbook(info_task(cluster_name='mastodon-pg'))
    res = result.result('info')
    assert res['failed'] and 'connection pools' in res['msg'] and '404' in res['msg']
    do_api.reset()
    result = do_playbook(info_task(tag="''"))
    assert 'tag must not be empty' in result.result('info')['msg']
    result = do_playbook(info_task(cluster_id='x', tag='y'))
    assert 'mutually exclusive' in result.result('info')['msg']
    assert do_api.count() == 0
