# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Contract test: every response the stand-in can give is valid against DigitalOcean's OpenAPI excerpt.

Each endpoint x each fixture x each fault that answers with JSON is requested over HTTPS; the body
and the documented headers are validated with openapi-schema-validator (OAS 3.0, read direction,
format checks) and `$ref`s resolved across the excerpt's files with `referencing`.
"""
from __future__ import annotations

import os
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import yaml
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

OPERATIONS = {
    'list': 'resources/databases/databases_list_clusters.yml',
    'get': 'resources/databases/databases_get_cluster.yml',
    'ca': 'resources/databases/databases_get_ca.yml',
    'pools': 'resources/databases/databases_list_connectionPools.yml',
    'pool': 'resources/databases/databases_get_connectionPool.yml',
    'add_pool': 'resources/databases/databases_add_connectionPool.yml',
    'users': 'resources/databases/databases_list_users.yml',
    'user': 'resources/databases/databases_get_user.yml',
    'add_user': 'resources/databases/databases_add_user.yml',
    'firewall': 'resources/databases/databases_list_firewall_rules.yml',
    'backups': 'resources/databases/databases_list_backups.yml',
}
NOT_FOUND_ID = '00000000-0000-4000-8000-000000000000'


# The excerpt of DigitalOcean's OpenAPI description that this test needs (tests/data/digitalocean-openapi/ORIGIN.md).
SPEC_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'data',
                         'digitalocean-openapi', 'specification')


def _spec_root():
    if not os.path.isdir(SPEC_ROOT):
        pytest.fail('DigitalOcean OpenAPI excerpt not found at %s' % SPEC_ROOT)
    return SPEC_ROOT


class Contract(object):
    def __init__(self, root):
        self.root = root
        self.cache = {}
        self.registry = Registry(retrieve=self._retrieve)
        self.count = 0
        self.by_endpoint = {}

    def _load(self, uri):
        path = urlsplit(uri).path
        if path not in self.cache:
            with open(path, encoding='utf-8') as handle:
                self.cache[path] = yaml.safe_load(handle)
        return self.cache[path]

    def _retrieve(self, uri):
        return DRAFT4.create_resource(self._load(uri))

    def _validator(self, uri):
        return OAS30ReadValidator({'$ref': uri}, registry=self.registry, format_checker=oas30_format_checker)

    def check(self, endpoint, response):
        """Validate one response; returns a list of problems (empty when it conforms)."""
        op_uri = 'file://' + os.path.join(self.root, OPERATIONS[endpoint])
        responses = self._load(op_uri)['responses']
        key = str(response.status_code) if str(response.status_code) in responses else 'default'
        ref = responses[key]['$ref']
        response_uri = urljoin(op_uri, ref)
        spec = self._load(response_uri)
        problems = []
        ctype = response.headers.get('content-type', '')
        if not ctype.startswith('application/json'):
            problems.append('content-type %r is not application/json' % ctype)
        body = response.json()
        for error in self._validator(response_uri + '#/content/application~1json/schema').iter_errors(body):
            problems.append('body %s: %s' % ('/'.join(str(p) for p in error.absolute_path), error.message))
        headers = dict(spec.get('headers') or {})
        common = 'file://' + os.path.join(self.root, 'common', 'headers.yml')  # the excerpt's own shared headers
        headers['x-request-id'] = {'$ref': common + '#/x-request-id'}
        headers['content-type'] = {'$ref': common + '#/content-type'}
        for name, header in sorted(headers.items()):
            header_uri = urljoin(response_uri, header['$ref']) if '$ref' in header else None
            resolved = self.registry.resolver(base_uri=response_uri).lookup(header_uri).contents if header_uri else header
            value = response.headers.get(name)
            if value is None:
                problems.append('header %s missing' % name)
                continue
            if resolved['schema'].get('type') == 'integer':
                try:
                    value = int(value)
                except ValueError:
                    pass
            for error in self._validator(header_uri + '/schema').iter_errors(value):
                problems.append('header %s=%r: %s' % (name, value, error.message))
        if response.status_code >= 400 and isinstance(body, dict) and body.get('request_id') != response.headers.get('x-request-id'):
            problems.append('error body request_id differs from x-request-id')
        self.count += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
        return problems


@pytest.fixture(scope='module')
def contract(pytestconfig):
    checker = Contract(_spec_root())
    yield checker
    pytestconfig.do_contract_count = getattr(pytestconfig, 'do_contract_count', 0) + checker.count
    counts = getattr(pytestconfig, 'do_contract_by_endpoint', {})
    for endpoint, count in checker.by_endpoint.items():
        counts[endpoint] = counts.get(endpoint, 0) + count
    pytestconfig.do_contract_by_endpoint = counts


def _cases(fixtures):
    """(endpoint, path, query) for every endpoint and fixture."""
    cases = []
    per_cluster = (('get', ''), ('ca', '/ca'), ('pools', '/pools'), ('users', '/users'), ('firewall', '/firewall'),
                   ('pool', '/pools/no-such-pool'), ('user', '/users/nobody'), ('backups', '/backups'))
    for cluster in fixtures['clusters']:
        for endpoint, suffix in per_cluster:
            cases.append((endpoint, '/v2/databases/%s%s' % (cluster['id'], suffix), {}))
        for pool in fixtures['pools'].get(cluster['id'], []):
            cases.append(('pool', '/v2/databases/%s/pools/%s' % (cluster['id'], pool['name']), {}))
        for user in cluster.get('users') or []:
            cases.append(('user', '/v2/databases/%s/users/%s' % (cluster['id'], user['name']), {}))
    for endpoint, suffix in per_cluster:
        cases.append((endpoint, '/v2/databases/%s%s' % (NOT_FOUND_ID, suffix), {}))
    cases.append(('list', '/v2/databases', {}))
    cases.append(('list', '/v2/databases', {'per_page': 200}))
    for tag in ('mastodon', 'production', 'staging', 'no-such-tag'):
        cases.append(('list', '/v2/databases', {'tag_name': tag}))
    return cases


FAULTS = [
    ('none', None),
    ('401', {'kind': 'status', 'status': 401}),
    ('403', {'kind': 'status', 'status': 403}),
    ('404', {'kind': 'status', 'status': 404}),
    ('429-retry-after', {'kind': 'rate_limit', 'retry_after': 2}),
    ('429-ratelimit-reset', {'kind': 'rate_limit', 'reset_in': 3}),
    ('500', {'kind': 'status', 'status': 500}),
    ('503-default', {'kind': 'status', 'status': 503}),
    ('slow', {'kind': 'slow', 'delay': 0.05}),
] + [('ca-%s' % v, {'kind': 'ca', 'variant': v})
     for v in ('non_ca', 'expired', 'expiring', 'not_yet_valid', 'bad_base64', 'not_pem', 'garbage_pem')]


@pytest.mark.parametrize('fault_id,fault', FAULTS, ids=[f[0] for f in FAULTS])
def test_every_response_conforms(do_api, contract, fault_id, fault):
    session = requests.Session()
    failures = []
    checked = 0
    for endpoint, path, query in _cases(do_api.fixtures):
        if fault_id.startswith('ca-') and endpoint != 'ca':
            continue
        do_api.set_faults(*([fault] if fault else []))
        response = session.get(do_api.base_url + path, params=query, verify=do_api.ca_file, timeout=10,
                               headers={'Authorization': 'Bearer %s' % do_api.token})
        problems = contract.check(endpoint, response)
        checked += 1
        if problems:
            failures.append('%s %s %s -> %s: %s' % (fault_id, path, query, response.status_code, problems))
    assert checked > 0
    assert not failures, '\n'.join(failures)


def test_unauthenticated_and_paginated_responses_conform(do_api, contract):
    failures = []
    checked = 0
    do_api.set_max_per_page(2)
    for token in (None, 'standin-wrong'):
        headers = {'Authorization': 'Bearer %s' % token} if token else {}
        response = requests.get(do_api.base_url + '/v2/databases', headers=headers, verify=do_api.ca_file, timeout=10)
        assert response.status_code == 401 and response.json()['id'] == 'unauthorized'
        failures += contract.check('list', response)
        checked += 1
    url = do_api.base_url + '/v2/databases?per_page=200'
    pages = 0
    while url:
        response = requests.get(url, headers={'Authorization': 'Bearer %s' % do_api.token}, verify=do_api.ca_file, timeout=10)
        failures += contract.check('list', response)
        checked += 1
        pages += 1
        url = response.json()['links']['pages'].get('next')
    assert pages == (len(do_api.fixtures['clusters']) + 1) // 2  # two per page, every page followed
    assert not failures, failures


def _post_cases(fixtures):
    """(endpoint, path, body, expected status) for databases_add_user and databases_add_connectionPool, in order:
    each success first, then the same request again (a duplicate) and bodies DigitalOcean refuses."""
    pg = next(c for c in fixtures['clusters'] if c['name'] == 'mastodon-pg')['id']
    valkey = next(c for c in fixtures['clusters'] if c['name'] == 'mastodon-valkey')['id']
    pool = dict(name='contract-pool', mode='transaction', size=10, db='mastodon_production', user='contract-user')
    return [
        ('add_user', '/v2/databases/%s/users' % pg, dict(name='contract-user'), 201),
        ('add_user', '/v2/databases/%s/users' % pg, dict(name='contract-user'), 422),
        ('add_user', '/v2/databases/%s/users' % pg, dict(), 422),
        ('add_user', '/v2/databases/%s/users' % valkey, dict(name='contract-user'), 404),
        ('add_user', '/v2/databases/%s/users' % NOT_FOUND_ID, dict(name='contract-user'), 404),
        ('add_pool', '/v2/databases/%s/pools' % pg, pool, 201),
        ('add_pool', '/v2/databases/%s/pools' % pg, pool, 422),
        ('add_pool', '/v2/databases/%s/pools' % pg, dict(pool, name='no-user-pool', user=None), 201),
        ('add_pool', '/v2/databases/%s/pools' % pg, dict(pool, name='p2', mode='batch'), 422),
        ('add_pool', '/v2/databases/%s/pools' % pg, dict(pool, name='p3', db='no_such_db'), 422),
        ('add_pool', '/v2/databases/%s/pools' % pg, dict(pool, name='p4', user='nobody'), 422),
        ('add_pool', '/v2/databases/%s/pools' % valkey, pool, 422),
        ('add_pool', '/v2/databases/%s/pools' % NOT_FOUND_ID, pool, 404),
        ('pool', '/v2/databases/%s/pools/contract-pool' % pg, None, 200),
        ('user', '/v2/databases/%s/users/contract-user' % pg, None, 200),
    ]


POST_FAULTS = [('none', None)] + [f for f in FAULTS if f[0] in ('401', '403', '429-retry-after', '500', 'slow')]


@pytest.mark.parametrize('fault_id,fault', POST_FAULTS, ids=[f[0] for f in POST_FAULTS])
def test_every_write_conforms(do_api, contract, fault_id, fault):
    """databases_add_user / databases_add_connectionPool answer 201 with the new user (its password) or pool
    (its connections), and refusals as {id, message, request_id} (databases_add_user.yml, databases_add_connectionPool.yml).
    Each run writes into a stand-in of its own, so the shared fixtures stay as they were."""
    api = do_api.spawn()
    session = requests.Session()
    failures = []
    try:
        for endpoint, path, body, expected in _post_cases(api.fixtures):
            api.set_faults(*([fault] if fault else []))
            method = 'GET' if body is None else 'POST'
            if body is not None:
                body = dict((k, v) for k, v in body.items() if v is not None)
            response = session.request(method, api.base_url + path, json=body, verify=api.ca_file, timeout=10,
                                       headers={'Authorization': 'Bearer %s' % api.token})
            if fault is None and response.status_code != expected:
                failures.append('%s %s %s: HTTP %s, expected %s: %s'
                                % (method, path, body, response.status_code, expected, response.text[:200]))
            problems = contract.check(endpoint, response)
            if problems:
                failures.append('%s %s %s -> %s: %s' % (fault_id, path, body, response.status_code, problems))
        if fault is None:
            created = [r for r in api.requests if r['method'] == 'POST']
            assert len(created) == len([c for c in _post_cases(api.fixtures) if c[2] is not None])
    finally:
        api.stop()
    assert not failures, '\n'.join(failures)


def test_validator_rejects_a_broken_answer(contract):
    """The checker itself must catch a non-conforming body (guards against a vacuous contract test)."""

    class Fake(object):
        status_code = 200
        headers = {'content-type': 'application/json', 'ratelimit-limit': 'many', 'x-request-id': 'nope'}

        @staticmethod
        def json():
            return {'ca': {'cert': 'x'}}

    problems = contract.check('ca', Fake())
    contract.count -= 1
    contract.by_endpoint['ca'] -= 1
    joined = ' '.join(problems)
    assert "'certificate' is a required property" in joined
    assert 'ratelimit-limit' in joined and 'ratelimit-remaining missing' in joined and "'nope' is not a 'uuid'" in joined


def test_validator_rejects_broken_answers_of_the_new_operations(contract):
    """A rule type outside models/firewall_rule.yml's enum, a user without its required name
    (models/database_user.yml), and a created pool without size (models/connection_pool.yml) are caught."""

    def fake(status, body):
        return type('Fake', (object,), dict(
            status_code=status, json=staticmethod(lambda: body),
            headers={'content-type': 'application/json', 'ratelimit-limit': '5000', 'ratelimit-remaining': '4999',
                     'ratelimit-reset': '1700000000', 'x-request-id': '79f26d28-ea8a-41f2-8ad8-8cfcdd020095'}))()

    cases = [
        ('firewall', fake(200, {'rules': [{'type': 'vpc', 'value': 'x'}]}), "'vpc' is not one of"),
        ('add_user', fake(201, {'user': {'role': 'normal', 'password': 'x'}}), "'name' is a required property"),
        ('add_pool', fake(201, {'pool': {'name': 'p', 'mode': 'transaction', 'db': 'd'}}), "'size' is a required property"),
        ('backups', fake(200, {'backups': [{'created_at': '2026-12-05T03:10:00Z'}]}), "'size_gigabytes' is a required property"),
        ('backups', fake(200, {'backups': [{'created_at': 'yesterday', 'size_gigabytes': 1}]}), "'yesterday' is not a 'date-time'"),
        ('backups', fake(200, {'scheduled_backup_time': {'backup_hour': 3}}), "'backups' is a required property"),
    ]
    for endpoint, response, expected in cases:
        problems = contract.check(endpoint, response)
        contract.count -= 1
        contract.by_endpoint[endpoint] -= 1
        assert any(expected in problem for problem in problems), (endpoint, problems)


def test_backups_answer_as_documented(do_api, contract):
    """databases_list_backups for each kind of cluster the fixtures hold: a week of daily backups (mastodon-pg, the
    newest a few hours old), backups that stopped (staging-pg), a new cluster whose first backup is in progress
    (backup_progress, no backups yet), and Valkey, for which "Backups are not supported" (databases_list_backups.yml):
    each answer conforms and carries what the point-of-no-return gate reads."""
    import datetime  # pylint: disable=import-outside-toplevel
    now = datetime.datetime.now(datetime.timezone.utc)
    headers = {'Authorization': 'Bearer %s' % do_api.token}
    answers = {}
    for name in ('mastodon-pg', 'staging-pg', 'filler-00', 'mastodon-valkey'):
        response = requests.get('%s/v2/databases/%s/backups' % (do_api.base_url, do_api.cluster(name)['id']),
                                headers=headers, verify=do_api.ca_file, timeout=10)
        assert contract.check('backups', response) == [], name
        answers[name] = response

    def newest_age_hours(response):
        newest = max(b['created_at'] for b in response.json()['backups'])
        created = datetime.datetime.strptime(newest, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
        return (now - created).total_seconds() / 3600

    assert answers['mastodon-pg'].status_code == 200 and len(answers['mastodon-pg'].json()['backups']) == 7
    assert 4 < newest_age_hours(answers['mastodon-pg']) < 6
    assert answers['mastodon-pg'].json()['scheduled_backup_time']['backup_interval_hours'] == 24
    assert 'backup_progress' not in answers['mastodon-pg'].json()
    assert 71 < newest_age_hours(answers['staging-pg']) < 73
    assert answers['filler-00'].json()['backups'] == [] and answers['filler-00'].json()['backup_progress'] == '36'
    assert answers['mastodon-valkey'].status_code == 404
    assert 'not supported' in answers['mastodon-valkey'].json()['message']
