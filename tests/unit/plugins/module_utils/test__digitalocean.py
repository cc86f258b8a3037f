# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the DigitalOcean client: retries, waits, pagination and errors, on a fake session."""
from __future__ import annotations

import json

import pytest
import requests

from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import (
    DigitalOceanClient, DigitalOceanError, application_user, backoff_delay, cluster_info, collect_passwords,
    digitalocean_argument_spec, ensure_pool, find_cluster_by_name, kubernetes_cluster_id_from_server, parse_wait,
    redis_url, strip_uri_password, trusted_sources_problem, validate_cluster_id, validate_pool_spec)

TOKEN = 'unit-test-token-4f1c9a'
BASE = 'https://api.example.test'
CLUSTER = '9cc10173-e9ea-4176-9dbc-a4cee4c4ff30'


class FakeResponse(object):
    def __init__(self, status, body=None, headers=None, raw=None, reason='OK'):
        self.status_code = status
        self.content = raw if raw is not None else json.dumps(body).encode('utf-8')
        self.text = self.content.decode('utf-8', 'replace')
        self.headers = requests.structures.CaseInsensitiveDict(headers or {})
        self.reason = reason

    def json(self):
        return json.loads(self.text)


class FakeSession(object):
    """Answers from a script: each item a FakeResponse or an exception to raise."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def get(self, url, **kwargs):
        self.calls.append((url, kwargs))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def post(self, url, **kwargs):
        return self.get(url, **dict(kwargs, method='POST'))


class Clock(object):
    def __init__(self):
        self.now = 1000000.0
        self.sleeps = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def client(script, **kwargs):
    clock = Clock()
    session = FakeSession(script)
    options = dict(base_url=BASE, session=session, sleep=clock.sleep, clock=clock.time, rand=lambda: 0.5)
    options.update(kwargs)
    return DigitalOceanClient(TOKEN, **options), session, clock


def error_body(error_id, message, request_id='req-1'):
    return {'id': error_id, 'message': message, 'request_id': request_id}


def test_argument_spec_protects_token():
    spec = digitalocean_argument_spec()
    assert spec['api_token']['no_log'] is True
    assert spec['api_token']['fallback'][1] == ['DIGITALOCEAN_ACCESS_TOKEN', 'DIGITALOCEAN_TOKEN', 'DO_API_TOKEN']
    assert spec['api_base_url']['default'] == 'https://api.digitalocean.com'


def test_success_sends_bearer_token_and_verify():
    api, session, clock = client([FakeResponse(200, {'ca': {'certificate': 'abc'}})], ca_path=None, validate_certs=False)
    assert api.database_ca(CLUSTER) == 'abc'
    url, kwargs = session.calls[0]
    assert url == '%s/v2/databases/%s/ca' % (BASE, CLUSTER)
    assert kwargs['headers']['Authorization'] == 'Bearer %s' % TOKEN
    assert kwargs['verify'] is False and kwargs['allow_redirects'] is False
    assert clock.sleeps == []


def test_429_waits_retry_after_then_succeeds():
    api, session, clock = client([
        FakeResponse(429, error_body('too_many_requests', 'slow down'), {'retry-after': '3'}),
        FakeResponse(429, error_body('too_many_requests', 'slow down'), {'ratelimit-reset': str(1000000 + 3 + 5)}),
        FakeResponse(200, {'database': {'id': CLUSTER}}),
    ])
    assert api.database(CLUSTER)['id'] == CLUSTER
    assert clock.sleeps == [3.0, 5.0]
    assert len(session.calls) == 3


def test_429_beyond_max_wait_fails_at_once_without_token():
    api, session, clock = client([FakeResponse(429, error_body('too_many_requests', 'rate limit ' + TOKEN),
                                               {'retry-after': '120'})], max_wait=60)
    with pytest.raises(DigitalOceanError) as info:
        api.database(CLUSTER)
    assert 'wait 120 s' in str(info.value) and 'max_wait 60' in str(info.value)
    assert info.value.status == 429 and info.value.error_id == 'too_many_requests' and info.value.request_id == 'req-1'
    assert TOKEN not in str(info.value)
    assert clock.sleeps == [] and len(session.calls) == 1


def test_5xx_backoff_is_exponential_bounded_and_jittered():
    script = [FakeResponse(500, error_body('server_error', 'boom'))] * 4
    api, session, clock = client(script, max_retries=3, max_wait=100)
    with pytest.raises(DigitalOceanError) as info:
        api.database(CLUSTER)
    assert 'gave up after 4 attempt' in str(info.value)
    assert clock.sleeps == [0.375, 0.75, 1.5]  # 0.5 * 2**n * (0.5 + 0.5/2)
    assert len(session.calls) == 4


def test_backoff_delay_caps_and_jitter_range():
    assert backoff_delay(0, lambda: 0.0) == 0.25
    assert backoff_delay(0, lambda: 0.999999) < 0.5
    assert backoff_delay(20, lambda: 0.999999) <= 30.0


def test_max_wait_bounds_total_backoff():
    script = [FakeResponse(503, error_body('service_unavailable', 'down'))] * 10
    api, session, clock = client(script, max_retries=9, max_wait=2)
    with pytest.raises(DigitalOceanError):
        api.database(CLUSTER)
    assert sum(clock.sleeps) <= 2
    assert len(session.calls) < 10


def test_timeouts_retried_then_reported_scrubbed():
    exc = requests.exceptions.ConnectTimeout('timed out talking with Bearer %s' % TOKEN)
    api, session, clock = client([exc, exc, exc], max_retries=2)
    with pytest.raises(DigitalOceanError) as info:
        api.databases()
    assert 'failed after 3 attempt' in str(info.value) and 'ConnectTimeout' in str(info.value)
    assert TOKEN not in str(info.value)
    assert len(clock.sleeps) == 2


def test_tls_error_not_retried():
    api, session, clock = client([requests.exceptions.SSLError('certificate verify failed')])
    with pytest.raises(DigitalOceanError) as info:
        api.databases()
    assert 'TLS error' in str(info.value) and len(session.calls) == 1


@pytest.mark.parametrize('status,error_id,hint', [(401, 'unauthorized', 'api_token'), (403, 'forbidden', 'scope'),
                                                  (404, 'not_found', 'not_found')])
def test_client_errors_fail_with_do_fields(status, error_id, hint):
    api, session, clock = client([FakeResponse(status, error_body(error_id, 'nope', 'rid-9'))])
    with pytest.raises(DigitalOceanError) as info:
        api.database(CLUSTER)
    text = str(info.value)
    assert str(status) in text and error_id in text and 'nope' in text and 'rid-9' in text and hint in text
    assert info.value.fail_kwargs()['request_id'] == 'rid-9'
    assert len(session.calls) == 1


def test_malformed_and_truncated_json():
    for raw in (b'{"databases": [', b"{'x': 1}", b'\xff\xfe'):
        api, session, clock = client([FakeResponse(200, raw=raw, headers={'content-length': str(len(raw))})])
        with pytest.raises(DigitalOceanError) as info:
            api.databases()
        assert 'malformed or truncated JSON' in str(info.value)


def test_pagination_follows_next_and_refuses_other_origins():
    page1 = {'databases': [{'id': 'a', 'name': 'one'}], 'links': {'pages': {'next': BASE + '/v2/databases?page=2&per_page=200'}}}
    page2 = {'databases': [{'id': 'b', 'name': 'two'}], 'links': {'pages': {'prev': BASE + '/v2/databases?page=1'}}}
    api, session, clock = client([FakeResponse(200, page1), FakeResponse(200, page2)])
    assert [c['id'] for c in api.databases()] == ['a', 'b']
    assert session.calls[0][0] == BASE + '/v2/databases?per_page=200'
    evil = {'databases': [], 'links': {'pages': {'next': 'https://evil.example/v2/databases?page=2'}}}
    api, session, clock = client([FakeResponse(200, evil)])
    with pytest.raises(DigitalOceanError) as info:
        api.databases()
    assert 'refusing to send the API token' in str(info.value) and len(session.calls) == 1


def test_null_database_list_is_empty():
    api, session, clock = client([FakeResponse(200, {'databases': None})])
    assert api.databases(tag='x') == []
    assert 'tag_name=x' in session.calls[0][0]


def test_find_cluster_by_name():
    body = {'databases': [{'id': '1', 'name': 'a'}, {'id': '2', 'name': 'b'}, {'id': '3', 'name': 'b'}]}
    api = client([FakeResponse(200, body)])[0]
    assert find_cluster_by_name(api, 'a')['id'] == '1'
    with pytest.raises(DigitalOceanError, match='no database cluster named'):
        find_cluster_by_name(client([FakeResponse(200, body)])[0], 'c')
    with pytest.raises(DigitalOceanError, match='2 database clusters are named'):
        find_cluster_by_name(client([FakeResponse(200, body)])[0], 'b')


def test_bad_options_named():
    with pytest.raises(DigitalOceanError, match='api_token is missing'):
        DigitalOceanClient('', session=FakeSession([]))
    with pytest.raises(DigitalOceanError, match='api_base_url'):
        DigitalOceanClient(TOKEN, base_url='api.digitalocean.com', session=FakeSession([]))
    with pytest.raises(DigitalOceanError, match='ca_path'):
        DigitalOceanClient(TOKEN, ca_path='/nonexistent/ca.pem', session=FakeSession([]))
    with pytest.raises(DigitalOceanError, match='cluster_id must be'):
        validate_cluster_id('abc')
    validate_cluster_id(CLUSTER)


def test_parse_wait():
    assert parse_wait({'retry-after': '7'}, 0) == 7
    assert parse_wait({'ratelimit-reset': '110'}, 100) == 10
    assert parse_wait({'ratelimit-reset': '90'}, 100) == 0
    assert parse_wait({'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT'}, 1445412470) == 10
    assert parse_wait({}, 0) is None


def test_uri_password_stripped_and_passwords_collected():
    assert strip_uri_password('postgresql://doadmin:s3cret@h:25060/db?sslmode=require') == 'postgresql://doadmin@h:25060/db?sslmode=require'
    assert strip_uri_password('rediss://h:25061') == 'rediss://h:25061'
    conn = dict(uri='postgresql://u:pw@h:1/d', host='h', port=1, user='u', password='pw', database='d', ssl=True)
    cluster = dict(id='i', name='n', engine='pg', connection=conn, users=[dict(name='u', password='pw')])
    pools = [dict(name='p', mode='transaction', size=1, db='d', user='u', connection=conn)]
    info = cluster_info(cluster, pools)
    assert 'pw' not in json.dumps(info)
    assert info['pools'][0]['connection']['uri'] == 'postgresql://u@h:1/d'
    assert collect_passwords(cluster, pools) == {'connection': 'pw', 'users': {'u': 'pw'}, 'pools': {'p': {'connection': 'pw'}}}


# -- trusted sources -------------------------------------------------------------------------------------------
K8S = 'bd5f5959-5e1e-4205-a714-a914373942af'
OTHER_K8S = 'ff2a6c52-5a44-4b63-b99c-0e98e7a63d61'


def rule(rule_type, value):
    """A rule as databases_list_firewall_rules returns it (responses/firewall_rules.yml)."""
    return {'uuid': '79f26d28-ea8a-41f2-8ad8-8cfcdd020095', 'cluster_uuid': CLUSTER, 'type': rule_type, 'value': value,
            'created_at': '2019-11-14T20:30:28Z'}


@pytest.mark.parametrize('rules', [
    [],                                                       # no trusted sources: open to every source
    None,
    [rule('ip_addr', '192.168.1.1'), rule('k8s', K8S)],
    [rule('k8s', K8S.upper())],
    [rule('tag', 'k8s:%s' % K8S)],                            # every DOKS node carries k8s, k8s:<id>, k8s:worker
    [rule('tag', 'k8s')],
])
def test_trusted_sources_admit_the_cluster(rules):
    assert trusted_sources_problem('mastodon-pg', rules, K8S) is None


@pytest.mark.parametrize('rules', [
    [rule('ip_addr', '192.168.1.1')],
    [rule('k8s', OTHER_K8S), rule('droplet', '163973392')],   # another cluster; a node droplet is replaced on recycle
    [rule('tag', 'backend'), rule('app', 'a7a8bas')],
])
def test_trusted_sources_that_omit_the_cluster_name_database_and_rule(rules):
    message = trusted_sources_problem('mastodon-pg', rules, K8S)
    assert "'mastodon-pg'" in message and 'does not admit the Kubernetes cluster %s' % K8S in message
    assert 'doctl databases firewalls append %s --rule k8s:%s' % (CLUSTER, K8S) in message
    assert 'type k8s with value %s' % K8S in message
    assert 'Databases > mastodon-pg > Network Access > Add Trusted Sources' in message
    for item in rules:
        assert '%s:%s' % (item['type'], item['value']) in message


def test_trusted_sources_database_id_given_and_cluster_unknown():
    message = trusted_sources_problem('db', [{'type': 'ip_addr', 'value': '10.0.0.1'}], OTHER_K8S, database_id='db-uuid')
    assert 'doctl databases firewalls append db-uuid --rule k8s:%s' % OTHER_K8S in message
    unknown = trusted_sources_problem('db', [rule('ip_addr', '10.0.0.1')], None)
    assert 'config_do_kubernetes_cluster_id' in unknown and 'ip_addr:10.0.0.1' in unknown
    assert trusted_sources_problem('db', [], None) is None


@pytest.mark.parametrize('url,expected', [
    ('https://%s.k8s.ondigitalocean.com' % K8S, K8S),
    ('https://%s.k8s.ondigitalocean.com:443/' % K8S.upper(), K8S),
    ('https://%s.k8s.ondigitalocean.com.evil.example' % K8S, None),
    ('http://%s.k8s.ondigitalocean.com' % K8S, None),
    ('https://not-a-uuid.k8s.ondigitalocean.com', None),
    ('https://127.0.0.1:6443', None),
    ('https://[::1', None),
    ('', None),
    (None, None),
])
def test_kubernetes_cluster_id_from_server(url, expected):
    assert kubernetes_cluster_id_from_server(url) == expected


# -- Redis / Valkey ------------------------------------------------------------------------------------------------
def redis_cluster(engine, password='p@ss/w:rd', ssl=True):
    def conn(host):
        return {'host': host, 'port': 25061, 'user': 'default', 'password': password, 'ssl': ssl,
                'uri': 'rediss://default:%s@%s:25061' % (password, host)}
    return {'id': CLUSTER, 'name': 'cache', 'engine': engine, 'connection': conn('public.db'),
            'private_connection': conn('private-public.db')}


@pytest.mark.parametrize('engine', ['valkey', 'redis'])
def test_redis_url_for_valkey_and_legacy_redis(engine):
    cluster = redis_cluster(engine)
    assert redis_url(cluster) == 'rediss://default:p%40ss%2Fw%3Ard@private-public.db:25061'
    assert redis_url(cluster, private=False) == 'rediss://default:p%40ss%2Fw%3Ard@public.db:25061'


def test_redis_url_from_do_database_info_output_and_errors():
    cluster = redis_cluster('valkey', ssl=False)
    info = {'name': 'cache', 'engine': 'valkey', 'private_connection': dict(cluster['private_connection'], password=None),
            'passwords': {'private_connection': 'sekret'}}
    assert redis_url(info) == 'redis://default:sekret@private-public.db:25061'
    with pytest.raises(DigitalOceanError, match="'cache' is a pg cluster, not Valkey or Redis"):
        redis_url(dict(cluster, engine='pg'))
    with pytest.raises(DigitalOceanError, match='no private_connection endpoint'):
        redis_url({'name': 'cache', 'engine': 'redis', 'connection': cluster['connection']})


# -- users and pools -------------------------------------------------------------------------------------------
PG = {'id': CLUSTER, 'name': 'mastodon-pg', 'engine': 'pg', 'db_names': ['defaultdb', 'mastodon_production'],
      'users': [{'name': 'doadmin', 'role': 'primary', 'password': 'admin-pw'}]}


def pool(name='mastodon', user='mastodon', password='app-pw'):
    """A pool as databases_list_connectionPools returns it (responses/connection_pools.yml)."""
    return {'name': name, 'mode': 'transaction', 'size': 20, 'db': 'mastodon_production', 'user': user,
            'connection': {'host': 'h', 'port': 25061, 'user': user, 'password': password, 'database': name, 'ssl': True}}


def test_new_client_calls_follow_the_openapi_paths():
    """Paths and bodies of databases_list_firewall_rules, _list_users, _get_user, _add_user, _get_connectionPool
    and _add_connectionPool (tests/data/digitalocean-openapi/specification/resources/databases/*.yml)."""
    api, session, clock = client([
        FakeResponse(200, {'rules': [rule('k8s', K8S)]}),
        FakeResponse(200, {'users': [{'name': 'doadmin', 'role': 'primary'}]}),
        FakeResponse(200, {'user': {'name': 'app user', 'role': 'normal', 'password': 'x'}}),
        FakeResponse(201, {'user': {'name': 'app', 'role': 'normal', 'password': 'y'}}),
        FakeResponse(200, {'pool': pool()}),
        FakeResponse(201, {'pool': pool('p2')}),
    ])
    assert api.database_firewall_rules(CLUSTER)[0]['value'] == K8S
    assert api.database_users(CLUSTER)[0]['name'] == 'doadmin'
    assert api.database_user(CLUSTER, 'app user')['password'] == 'x'
    assert api.add_database_user(CLUSTER, 'app')['password'] == 'y'
    assert api.database_pool(CLUSTER, 'mastodon')['name'] == 'mastodon'
    assert api.add_database_pool(CLUSTER, 'p2', 'transaction', 20, 'mastodon_production')['name'] == 'p2'
    paths = [url[len(BASE):] for url, dummy in session.calls]
    suffixes = ('firewall', 'users', 'users/app%20user', 'users', 'pools/mastodon', 'pools')
    assert paths == ['/v2/databases/%s/%s' % (CLUSTER, suffix) for suffix in suffixes]
    assert session.calls[3][1]['method'] == 'POST' and session.calls[3][1]['json'] == {'name': 'app'}
    assert session.calls[5][1]['json'] == {'name': 'p2', 'mode': 'transaction', 'size': 20, 'db': 'mastodon_production'}
    assert 'method' not in session.calls[0][1]


def test_post_is_retried_on_429_but_not_on_5xx_or_timeouts():
    """A 429 was refused before DigitalOcean acted; a 5xx or a timeout may have created the user already."""
    api, session, clock = client([FakeResponse(429, error_body('too_many_requests', 'slow down'), {'retry-after': '2'}),
                                  FakeResponse(201, {'user': {'name': 'app', 'password': 'y'}})])
    assert api.add_database_user(CLUSTER, 'app')['name'] == 'app' and clock.sleeps == [2.0]
    api, session, clock = client([FakeResponse(500, error_body('server_error', 'boom'))])
    with pytest.raises(DigitalOceanError, match='HTTP 500'):
        api.add_database_user(CLUSTER, 'app')
    assert len(session.calls) == 1 and clock.sleeps == []
    api, session, clock = client([requests.exceptions.ReadTimeout('read timed out')])
    with pytest.raises(DigitalOceanError, match='ReadTimeout'):
        api.add_database_pool(CLUSTER, 'p2', 'transaction', 20, 'mastodon_production', 'app')
    assert len(session.calls) == 1


def test_application_user_from_the_pool_needs_no_request():
    api, session, clock = client([])
    app = application_user(api, PG, [pool()], pool_name='mastodon')
    assert app == {'name': 'mastodon', 'role': None, 'source': 'pool', 'pool': 'mastodon', 'password': 'app-pw'}
    assert session.calls == []


def test_application_user_named_by_the_operator_reads_the_users_endpoint():
    api, session, clock = client([FakeResponse(200, {'user': {'name': 'migrator', 'role': 'normal', 'password': 'm-pw'}})])
    app = application_user(api, PG, [pool()], pool_name='mastodon', user_name='migrator')
    assert (app['name'], app['source'], app['password'], app['role']) == ('migrator', 'operator', 'm-pw', 'normal')
    assert session.calls[0][0].endswith('/users/migrator')


@pytest.mark.parametrize('kwargs,script,message', [
    (dict(pool_name='nope'), [], "app_pool: database cluster 'mastodon-pg' has no connection pool 'nope' \\(it has: mastodon\\)"),
    (dict(pool_name='mastodon'), [], 'app_pool: connection pool .* has no user'),
    (dict(), [], "app_user: name the application's database user"),
    (dict(user_name='ghost'), [FakeResponse(404, error_body('not_found', 'no'))], "has no user 'ghost'"),
    (dict(user_name='app'), [FakeResponse(200, {'user': {'name': 'app', 'role': 'normal'}})], 'database:view_credentials'),
])
def test_application_user_errors_name_the_option(kwargs, script, message):
    api, session, clock = client(script)
    pools = [dict(pool(), user=None)] if kwargs.get('pool_name') == 'mastodon' else [pool()]
    with pytest.raises(DigitalOceanError, match=message):
        application_user(api, PG, pools, **kwargs)


def test_application_user_refused_on_valkey():
    api, session, clock = client([])
    with pytest.raises(DigitalOceanError, match='engine valkey; connection pools and database users exist only on PostgreSQL'):
        application_user(api, dict(PG, engine='valkey'), [], user_name='x')


SPEC = {'name': 'mastodon', 'mode': 'transaction', 'size': 20, 'db': 'mastodon_production', 'user': 'mastodon'}


def test_ensure_pool_adds_user_then_pool_and_is_idempotent():
    api, session, clock = client([FakeResponse(200, {'pools': []}), FakeResponse(200, {'users': PG['users']}),
                                  FakeResponse(201, {'user': {'name': 'mastodon', 'password': 'new'}}),
                                  FakeResponse(201, {'pool': pool()})])
    outcome = ensure_pool(api, PG, SPEC)
    assert outcome['changed'] and outcome['user_created'] and outcome['pool']['name'] == 'mastodon'
    assert outcome['diff'] == {'before': {'pool': {}, 'users': []},
                               'after': {'pool': SPEC, 'users': ['mastodon']}}
    assert [c[1].get('method', 'GET') for c in session.calls] == ['GET', 'GET', 'POST', 'POST']
    api, session, clock = client([FakeResponse(200, {'pools': [pool()]}),
                                  FakeResponse(200, {'users': PG['users'] + [{'name': 'mastodon'}]})])
    outcome = ensure_pool(api, PG, SPEC)
    assert not outcome['changed'] and not outcome['user_created'] and outcome['diff']['before'] == outcome['diff']['after']


def test_ensure_pool_check_mode_only_reads():
    api, session, clock = client([FakeResponse(200, {'pools': []}), FakeResponse(200, {'users': PG['users']})])
    outcome = ensure_pool(api, PG, SPEC, check_mode=True)
    assert outcome['changed'] and outcome['user_created'] and outcome['pool'] == SPEC
    assert all('method' not in c[1] for c in session.calls) and len(session.calls) == 2


@pytest.mark.parametrize('change,message', [
    (dict(name='ab'), 'name: a connection pool name must be 3 to 60 characters'),
    (dict(mode='batch'), 'mode must be one of transaction, session, statement'),
    (dict(size=0), 'size must be a positive number'),
    (dict(size=True), 'size must be a positive number'),
    (dict(db=''), 'db: name the database'),
    (dict(user=' app'), 'user must be a database user name without surrounding spaces'),
])
def test_pool_spec_errors_name_the_option(change, message):
    with pytest.raises(DigitalOceanError, match=message):
        validate_pool_spec(dict(SPEC, **change))


def test_ensure_pool_refuses_before_any_write():
    api, session, clock = client([])
    with pytest.raises(DigitalOceanError, match="db: database cluster 'mastodon-pg' has no database 'nope'"):
        ensure_pool(api, PG, dict(SPEC, db='nope'))
    with pytest.raises(DigitalOceanError, match='engine redis'):
        ensure_pool(api, dict(PG, engine='redis'), SPEC)
    assert session.calls == []
    api, session, clock = client([FakeResponse(200, {'pools': [dict(pool(), size=10, mode='session')]})])
    with pytest.raises(DigitalOceanError, match="exists with other settings \\(mode is 'session', not 'transaction'; size is 10"):
        ensure_pool(api, PG, SPEC)
    assert len(session.calls) == 1
