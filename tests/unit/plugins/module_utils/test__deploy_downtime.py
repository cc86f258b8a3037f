# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The upgrade with downtime (plugins/module_utils/_deploy/downtime.py): what the stop step does against a fake API
server (scale to 0, wait for the pods, nothing once the Job succeeded, the backup gate first), the variables it
cannot go with, and the migration Job it makes (no SKIP_POST_DEPLOYMENT_MIGRATIONS: Mastodon's zero-downtime floor,
lib/tasks/db.rake:68-72 at 4.7, applies only with it)."""

from __future__ import annotations

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import downtime
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

V = {'config_namespace': 'ns', 'config_name': 'mastodon', 'config_upgrade_with_downtime': True, 'config_kubernetes': True,
     'web_wait_timeout': 5, 'streaming_wait_timeout': 5, 'sidekiq_wait_timeout': 5, 'migrations_post': 'run',
     'web_hpa_enabled': False}
JOB = {'kind': 'Job', 'metadata': {'name': 'mastodon-migrate-downtime-v4-7-6'}}
MANIFESTS = {'migrate-pre': [JOB]}


def deployment(name, replicas):
    return {'metadata': {'name': name}, 'spec': {'replicas': replicas, 'selector': {'matchLabels': {'app': name}}}}


class FakeAPI(object):
    """Deployments with pods; a scale to 0 removes a Deployment's pods after `lag` pod listings."""

    def __init__(self, job=None, lag=1):
        self.deployments = {'mastodon-web': deployment('mastodon-web', 2),
                            'mastodon-streaming': deployment('mastodon-streaming', 2),
                            'mastodon-sidekiq-default': deployment('mastodon-sidekiq-default', 1)}
        self.pods = dict((name, ['%s-%d' % (name, i) for i in range(d['spec']['replicas'])])
                         for name, d in self.deployments.items())
        self.job = job
        self.lag = lag
        self.calls = []
        self.scaled = {}

    @staticmethod
    def path(api_version, kind, namespace=None, name=None, subresource=None):
        return '/apis/%s/namespaces/%s/%ss/%s' % (api_version, namespace, kind.lower(), name)

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append((method, path))
        if path.endswith('/jobs/' + JOB['metadata']['name']):
            return (404, {}) if self.job is None else (200, self.job)
        if path == '/apis/apps/v1/namespaces/ns/deployments':
            assert 'applyset.kubernetes.io/part-of in (' in query['labelSelector']
            return 200, {'items': list(self.deployments.values())}
        if path.endswith('/scale'):
            assert method == 'PATCH' and content_type == downtime.MERGE_PATCH and body == {'spec': {'replicas': 0}}
            name = path.split('/')[-2]
            self.deployments[name]['spec']['replicas'] = 0
            self.scaled[name] = self.lag
            return 200, {}
        if path == '/api/v1/namespaces/ns/pods':
            name = query['labelSelector'].split('=', 1)[1]
            if name in self.scaled:
                if self.scaled[name] <= 0:
                    self.pods[name] = []
                self.scaled[name] -= 1
            return 200, {'items': [{'metadata': {'name': pod}} for pod in self.pods[name]]}
        raise AssertionError('unexpected request %s %s' % (method, path))


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(downtime, 'POLL', 0.01)


def test_stop_scales_everything_to_0_and_waits_for_the_pods():
    api = FakeAPI(lag=2)
    lines = []
    out = downtime.stop(api, V, MANIFESTS, lines.append, backup_check=lambda: [])
    assert out['changed'] and out['stopped'] == ['mastodon-sidekiq-default', 'mastodon-streaming', 'mastodon-web']
    assert all(not pods for pods in api.pods.values())
    assert lines and 'to end' in lines[0]


def test_nothing_is_stopped_once_the_job_succeeded():
    api = FakeAPI(job={'status': {'succeeded': 1}})
    out = downtime.stop(api, V, MANIFESTS, backup_check=lambda: pytest.fail('no backup check for nothing'))
    assert not out['changed'] and not api.scaled and 'nothing to stop' in out['msg']


def test_a_failed_or_running_job_keeps_everything_stopped():
    api = FakeAPI(job={'status': {'failed': 1}})
    assert downtime.stop(api, V, MANIFESTS, backup_check=lambda: [])['changed']


def test_the_backup_gate_comes_first():
    api = FakeAPI()
    error = ConfigError('migrations_backup_confirmed_at', 'no backup')
    out = downtime.stop(api, V, MANIFESTS, backup_check=lambda: [error])
    assert out == {'errors': [error]} and not api.scaled


def test_check_mode_scales_nothing():
    api = FakeAPI()
    out = downtime.stop(api, V, MANIFESTS, check_mode=True, backup_check=lambda: [])
    assert out['changed'] and 'would scale' in out['msg'] and not api.scaled


def test_pods_that_do_not_end_fail_before_the_job():
    api = FakeAPI(lag=10 ** 6)
    with pytest.raises(KubeError, match='were not started'):
        downtime.stop(api, V, MANIFESTS, timeout=0.05)


def test_variables_it_cannot_go_with():
    assert downtime.rules(V) == []
    assert [e.key for e in downtime.rules(dict(V, migrations_post='hold', web_hpa_enabled=True))] == [
        'migrations_post', 'web_hpa_enabled']
    assert downtime.rules(dict(V, config_upgrade_with_downtime=False, migrations_post='hold')) == []


def test_the_job_runs_every_migration():
    script = _migrations.job_container('downtime')['command'][-1]
    assert 'unset SKIP_POST_DEPLOYMENT_MIGRATIONS' in script and 'export SKIP_POST_DEPLOYMENT_MIGRATIONS' not in script
    assert "fediops: schema_version=" in script  # the pre script's schema check, for the record
    with pytest.raises(_migrations.MigrationsError, match='one of pre, post,'):
        _migrations.job_container('prepare')
