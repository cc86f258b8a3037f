# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The right variable in every message, and the rules the API server does not enforce (_deploy/rules.py
consistency_checks, endpoints.do_error, applier.unserved_kinds, guards.reference_problems).

Facts: config/database.yml (the pool is DB_POOL when set); DigitalOcean's managed databases accept TLS only
(reference README, DigitalOcean facts); Linux/YAML: Ansible's YAML 1.1 reads an unquoted `no` as false."""

from __future__ import annotations

import json

import pytest
import requests

from ansible_collections.fediops.mastodon.plugins.module_utils import _digitalocean as do
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import applier, endpoints, errors, guards, plan
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.plan_inputs import BASE, NOW, SPECS

DO = {'config_database_source': 'digitalocean', 'config_do_database_cluster': 'pg', 'config_redis_url': ''}


def problems(**overrides):
    deploy = plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW)
    try:
        deploy.check_inputs()
    except errors.PlanError as exc:
        return [(e.key, str(e)) for e in exc.errors]
    return []


@pytest.mark.parametrize('overrides, variable, words', [
    ({'web_extra_env': {'DB_POOL': 2}}, 'web_extra_env', 'lower than web_max_threads'),
    ({'sidekiq_extra_env': {'DB_POOL': '5'}}, 'sidekiq_extra_env', 'lower than the largest sidekiq concurrency (25)'),
    (dict(DO, config_db_sslmode='disable'), 'config_db_sslmode', 'accepts only TLS'),
    (dict(DO, config_redis_url='redis://default:pw@kv.example:25061'), 'config_redis_url', 'rediss://'),
    (dict(DO, config_extra_env={'REDIS_URL': 'redis://kv.example:25061'}), 'config_extra_env', 'REDIS_URL: a redis://'),
    ({'config_streaming_host': 'streaming.social.example',
      'config_env': {'STREAMING_API_BASE_URL': 'wss://other.social.example'}}, 'config_env',
     'points at other.social.example, but config_streaming_host is streaming.social.example'),
    ({'config_image_repository': 'ghcr.io/mastodon/mastodon:v4.6.5'}, 'config_image_repository', 'carries a tag'),
    ({'config_streaming_image_repository': 'registry.example:5000/m/streaming@sha256:' + 'a' * 64},
     'config_streaming_image_repository', 'carries a tag or digest'),
    ({'config_labels': {'app.kubernetes.io/instance': 'prod'}}, 'config_labels', 'not on the pods nor the selectors'),
    ({'config_ca_mount_dir': '/opt/mastodon/tmp'}, 'config_ca_mount_dir', 'would be mounted over /opt/mastodon/tmp'),
    ({'config_ca_mount_dir': '/opt'}, 'config_ca_mount_dir', '/opt/mastodon'),
    ({'config_ca_mount_dir': '/opt/mastodon/config/ca'}, 'config_ca_mount_dir', "Mastodon's own files"),
    ({'web_hpa_enabled': True, 'web_hpa_min_replicas': 2, 'web_hpa_max_replicas': 4, 'web_pdb_min_available': 2},
     'web_pdb_min_available', 'lower than web_hpa_min_replicas (2)'),
])
def test_accepted_although_wrong_is_now_refused_naming_the_variable(overrides, variable, words):
    found = problems(**overrides)
    assert [key for key, dummy in found] == [variable], found
    assert words in found[0][1]


@pytest.mark.parametrize('overrides', [
    {'web_extra_env': {'DB_POOL': 16}}, {'config_streaming_host': 'streaming.social.example',
                                         'config_env': {'STREAMING_API_BASE_URL': 'wss://streaming.social.example'}},
    {'config_image_repository': 'registry.example:5000/mastodon/mastodon'}, {'config_ca_mount_dir': '/etc/ssl/db-ca/'},
    {'config_labels': {'team': 'social'}}, {'web_hpa_enabled': True, 'web_hpa_min_replicas': 3, 'web_pdb_min_available': 2},
    dict(DO, config_db_sslmode='require'),
])
def test_the_right_values_pass(overrides):
    assert problems(**overrides) == []


def test_default_locale_read_as_a_boolean_says_so():
    with pytest.raises(mconfig.ConfigError) as info:
        mconfig._check_type('DEFAULT_LOCALE', mconfig.SCHEMA['DEFAULT_LOCALE'], mconfig.to_text('DEFAULT_LOCALE', False), '4.6')
    assert 'is a boolean (false), not a locale' in str(info.value) and 'quote the locale' in str(info.value)


# ------------------------------------------------------------------ DigitalOcean: the variable at fault
class Response(object):
    def __init__(self, status, body, headers=None):
        self.status_code, self._body = status, body
        self.content = json.dumps(body).encode('utf-8')
        self.text = self.content.decode('utf-8')
        self.headers = requests.structures.CaseInsensitiveDict(headers or {})
        self.reason = 'x'

    def json(self):
        return self._body


class Session(object):
    def __init__(self, answers):
        self.answers = list(answers)
        self.headers = []

    def get(self, url, **kwargs):
        self.headers.append(kwargs['headers']['Authorization'])
        return self.answers.pop(0)


def _client(answers, token='tok-123', **kwargs):
    options = dict(base_url='https://api.example.test', session=Session(answers), sleep=lambda s: None,
                   clock=lambda: 0.0, rand=lambda: 0.5)
    options.update(kwargs)
    return do.DigitalOceanClient(token, **options)


def _looked_up(client, **extra):
    v = {'config_do_private_network': False, 'config_do_database_cluster': 'pg', 'config_do_redis_cluster': '',
         'config_do_use_pool': False, 'config_do_pool': '', 'config_db_name': 'mastodon', 'config_redis_url': '',
         'config_db_ca_pem': '', 'config_kubernetes': False}
    v.update(extra)
    with pytest.raises(errors.PlanError) as info:
        endpoints.do_endpoints(v, client)
    return info.value


@pytest.mark.parametrize('status, words', [(401, 'check config_do_api_token (or DIGITALOCEAN_ACCESS_TOKEN)'),
                                           (403, 'the token of config_do_api_token (or DIGITALOCEAN_ACCESS_TOKEN) lacks')])
def test_a_bad_token_or_a_token_without_scope_names_the_token(status, words):
    refusal = _looked_up(_client([Response(status, {'id': 'unauthorized', 'message': 'no'})]))
    assert refusal.variables == ['config_do_api_token'] and words in refusal.message()
    assert 'tok-123' not in refusal.message()


def test_a_token_with_a_trailing_newline_is_used_without_it():
    client = _client([Response(200, {'databases': []})], token='tok-123\n')
    client.databases()
    assert client.session.headers == ['Bearer tok-123']


def test_the_client_options_are_named_as_the_role_variables():
    refusal = _looked_up(lambda: _client([], base_url='api.digitalocean.com'))
    assert refusal.variables == ['config_do_api_base_url'] and 'must be an http(s) URL' in refusal.message()
    refusal = _looked_up(lambda: _client([], ca_path='/nonexistent/ca.pem'))
    assert refusal.variables == ['config_do_ca_path'] and '/nonexistent/ca.pem is not a readable file' in refusal.message()
    refusal = _looked_up(lambda: _client([], token=''))
    assert refusal.variables == ['config_do_api_token']


def test_a_404_on_the_ca_names_the_cluster():
    cluster = {'id': 'pg-id', 'name': 'pg', 'engine': 'redis', 'connection': {'host': 'h', 'port': 1, 'user': 'u'}}
    refusal = _looked_up(_client([Response(200, {'databases': [cluster]}), Response(404, {'id': 'not_found', 'message': 'x'})]))
    assert refusal.variables == ['config_do_database_cluster'] and 'config_db_ca_pem' in refusal.message()


def test_429_after_the_retries_says_which_bound_ended_them():
    client = _client([Response(429, {'id': 'too_many_requests', 'message': 'slow'}, {'retry-after': '1'})] * 3,
                     max_retries=2, max_wait=60)
    with pytest.raises(do.DigitalOceanError) as info:
        client.databases()
    text = str(info.value)
    assert 'the API asks to wait 1 s, and the 2 retries of max_retries are used up' in text
    assert 'beyond the bound' not in text


# ------------------------------------------------------------------ the cluster: kinds and references
class NoGatewayClient(object):
    def resource(self, api_version, kind):
        if kind == 'HTTPRoute':
            raise KubeError('the API server https://k has no kind HTTPRoute in gateway.networking.k8s.io/v1', status=404)
        return ('x', True)


def test_httproute_without_the_gateway_api_names_the_exposure():
    component = applier.ComponentApplier.__new__(applier.ComponentApplier)
    component.client, component.component, component.origins = NoGatewayClient(), 'web', {}
    route = {'apiVersion': 'gateway.networking.k8s.io/v1', 'kind': 'HTTPRoute', 'metadata': {'name': 'mastodon-web'}}
    service = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'mastodon-web'}}
    (error,) = component.unserved_kinds([service, route])
    assert error.key == 'web_exposure' and 'Gateway API CRDs are not installed' in str(error)


def test_references_missing():
    found = {('config_media_volume_claim', 'PersistentVolumeClaim', 'media'): False,
             ('config_image_pull_secrets', 'Secret', 'regcred'): False,
             ('web_ingress_class_name', 'IngressClass', 'nginx'): False,
             ('streaming_ingress_class_name', 'IngressClass', 'nginx'): None}  # not readable with the Role: no word
    refused, warnings = guards.reference_problems(found, 'social')
    assert [e.key for e in refused] == ['config_media_volume_claim'] and 'would stay Pending' in str(refused[0])
    assert len(warnings) == 2
    assert any(w.startswith('config_image_pull_secrets: the Secret regcred') and 'may create it later' in w
               for w in warnings)
    assert any(w.startswith('web_ingress_class_name: the IngressClass nginx') and 'ingress controller' in w
               for w in warnings)
