# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/deploy.yml with web_exposure/streaming_exposure: httproute, on a real API server that serves the
Gateway API (its standard-channel CRDs, installed by the gateway_api fixture from the Go module
sigs.k8s.io/gateway-api): the HTTPRoutes are created (and accepted by the CRD's schema, server-side dry-run
included), a re-run changes nothing, and switching back to Ingress prunes them from the ApplySets.
"""
from __future__ import annotations

import datetime
import json
import os
import uuid

import pytest

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEPLOY = os.path.join(COLLECTION_ROOT, 'playbooks', 'deploy.yml')
PLAY = '''\
- name: Deploy
  ansible.builtin.import_playbook: {deploy}
'''
PARENT = {'name': 'public', 'namespace': 'gateway-system', 'sectionName': 'https'}


def _vars(namespace, exposure):
    return {
        'config_namespace': namespace,
        'config_local_domain': 'route.example.test',
        'config_database_source': 'explicit',
        'config_db_host': 'db.example.test',
        'config_db_password': 'pw-' + 'x' * 16,
        'config_redis_url': 'redis://redis.example.test:6379',
        'config_tls_preflight': False,
        'config_media_ephemeral': True,
        'web_exposure': exposure, 'streaming_exposure': exposure,
        'web_gateway_parent_refs': [PARENT], 'streaming_gateway_parent_refs': [PARENT],
        'web_wait_timeout': 120, 'streaming_wait_timeout': 120, 'sidekiq_wait_timeout': 120,
        'migrations_wait_timeout': 120,
        # an explicit database: the point of no return asks for the operator's backup (docs/dev/ARCHITECTURE.md 3)
        'migrations_backup_confirmed_at': (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
        .strftime('%Y-%m-%dT%H:%M:%SZ'),
    }


@pytest.fixture
def namespace(kube_cluster):
    name = 'httproute-' + uuid.uuid4().hex[:8]
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--ignore-not-found', '--wait=false', check=False)


def _deploy(run_playbook, kube_cluster, namespace, exposure):
    res = run_playbook(PLAY.format(deploy=json.dumps(DEPLOY)), extra_vars=_vars(namespace, exposure),
                       env={'K8S_AUTH_KUBECONFIG': kube_cluster.kubeconfig})
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-2000:])
    return res


def _pruned(res):
    """(kind, name) of every object the deploy's tasks pruned."""
    out = []
    for dummy, result in res.task_results():
        steps = list((result.get('components') or {}).values()) + [result]
        for step in steps:
            out += [(p['kind'], p['name']) for p in step.get('pruned') or []]
    return sorted(set(out))


def _names(kube_cluster, namespace, resource):
    found = kube_cluster.kubectl('get', resource, '-n', namespace, '-o', 'json')
    return sorted(item['metadata']['name'] for item in json.loads(found.stdout)['items'])


def test_httproute_created_unchanged_then_pruned_for_ingress(run_playbook, kube_cluster, gateway_api, namespace):
    assert 'httproutes.gateway.networking.k8s.io' in gateway_api
    first = _deploy(run_playbook, kube_cluster, namespace, 'httproute')
    assert first.stats['localhost']['changed'] >= 1
    routes = _names(kube_cluster, namespace, 'httproutes.gateway.networking.k8s.io')
    assert routes == ['mastodon-streaming', 'mastodon-web']
    assert _names(kube_cluster, namespace, 'ingresses') == []
    route = json.loads(kube_cluster.kubectl('get', 'httproutes.gateway.networking.k8s.io', 'mastodon-streaming', '-n',
                                            namespace, '-o', 'json').stdout)
    assert route['spec']['parentRefs'][0]['name'] == 'public' and route['spec']['hostnames'] == ['route.example.test']
    assert route['spec']['rules'][0]['matches'][0]['path'] == {'type': 'PathPrefix', 'value': '/api/v1/streaming'}
    assert route['spec']['rules'][0]['backendRefs'][0]['name'] == 'mastodon-streaming'

    again = _deploy(run_playbook, kube_cluster, namespace, 'httproute')
    assert again.stats['localhost']['changed'] == 0, again.stdout[-4000:]
    assert _pruned(again) == []

    back = _deploy(run_playbook, kube_cluster, namespace, 'ingress')
    assert _names(kube_cluster, namespace, 'httproutes.gateway.networking.k8s.io') == []
    assert _names(kube_cluster, namespace, 'ingresses') == ['mastodon-streaming', 'mastodon-web']
    assert _pruned(back) == [('HTTPRoute', 'mastodon-streaming'), ('HTTPRoute', 'mastodon-web')]
