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
    DigitalOceanClient, DigitalOceanError, backoff_delay, cluster_info, collect_passwords, digitalocean_argument_spec,
    find_cluster_by_name, parse_wait, strip_uri_password, validate_cluster_id)

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
