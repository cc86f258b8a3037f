# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Graceful shutdown and rollouts in the rendered manifests: preStop hooks, grace periods, Sidekiq's -t and quiet
signal, strategies, PodDisruptionBudgets, progress deadlines; and the refusal of a grace period shorter than what
must run inside it (before anything is written).

Facts: streaming/index.js:1427-1443 (node exits at once on SIGTERM); Sidekiq's CLI: -t is the shutdown timeout,
TSTP makes it quiet; the kubelet counts terminationGracePeriodSeconds from the start of the termination, preStop
included, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import build, sidekiq_command
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import (
    make_model, use_migrations_stand_in)


@pytest.fixture(autouse=True)
def migrations_module(monkeypatch):
    use_migrations_stand_in(monkeypatch)


def deployment(result, component, name):
    (obj,) = [o for o in result[component] if o['kind'] == 'Deployment' and o['metadata']['name'] == name]
    return obj


def kinds(result, component):
    return sorted(o['kind'] for o in result[component])


@pytest.mark.parametrize('role', ['web', 'streaming'])
def test_http_servers_sleep_in_prestop_within_their_grace_period(role):
    result = build(make_model(**{role + '_prestop_delay_seconds': 7, role + '_termination_grace_period_seconds': 40,
                                 role + '_progress_deadline_seconds': 120}))
    obj = deployment(result, role, 'masto-' + role)
    spec = obj['spec']['template']['spec']
    # The kubelet's own sleep action: no binary needed in the image (read-only root, Pod Security restricted).
    assert spec['containers'][0]['lifecycle'] == {'preStop': {'sleep': {'seconds': 7}}}
    assert spec['terminationGracePeriodSeconds'] == 40
    assert obj['spec']['progressDeadlineSeconds'] == 120
    assert obj['spec']['strategy']['rollingUpdate']['maxUnavailable'] == 0
    assert obj['spec']['strategy']['rollingUpdate']['maxSurge'] == '25%'
    assert 'PodDisruptionBudget' in kinds(result, role)
    assert result.origins[('Deployment', 'masto-' + role, 'spec.template.spec.terminationGracePeriodSeconds')] == \
        role + '_termination_grace_period_seconds'
    assert result.origins[('Deployment', 'masto-' + role, 'spec.template.spec.containers[0].lifecycle')] == \
        role + '_prestop_delay_seconds'


def test_the_defaults_keep_serving_during_a_rollout():
    result = build(make_model())
    for role in ('web', 'streaming'):
        obj = deployment(result, role, 'masto-' + role)
        spec = obj['spec']['template']['spec']
        assert spec['containers'][0]['lifecycle']['preStop']['sleep']['seconds'] == 5
        assert spec['terminationGracePeriodSeconds'] == 30
        assert obj['spec']['strategy'] == {'type': 'RollingUpdate',
                                           'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': 0}}
        (pdb,) = [o for o in result[role] if o['kind'] == 'PodDisruptionBudget']
        assert pdb['spec']['minAvailable'] == 1
    sidekiq = deployment(result, 'sidekiq', 'masto-sidekiq-all')
    container = sidekiq['spec']['template']['spec']['containers'][0]
    assert container['command'][:7] == ['bundle', 'exec', 'sidekiq', '-c', '25', '-t', '25']
    assert sidekiq['spec']['template']['spec']['terminationGracePeriodSeconds'] == 60


def test_a_zero_prestop_delay_leaves_the_hook_out():
    result = build(make_model(web_prestop_delay_seconds=0))
    assert 'lifecycle' not in deployment(result, 'web', 'masto-web')['spec']['template']['spec']['containers'][0]


def test_sidekiq_goes_quiet_then_gets_its_timeout_within_the_grace_period():
    workers = [{'name': 'scheduler', 'queues': ['scheduler'], 'replicas': 1, 'concurrency': 5},
               {'name': 'default', 'queues': ['default', 'push', 'ingress', 'mailers', 'pull', 'fasp'], 'replicas': 3}]
    result = build(make_model(sidekiq_workers=workers, sidekiq_shutdown_timeout_seconds=40, sidekiq_quiet_seconds=8,
                              sidekiq_termination_grace_period_seconds=90, sidekiq_progress_deadline_seconds=300))
    for name in ('masto-sidekiq-scheduler', 'masto-sidekiq-default'):
        obj = deployment(result, 'sidekiq', name)
        spec = obj['spec']['template']['spec']
        container = spec['containers'][0]
        assert container['command'][container['command'].index('-t') + 1] == '40'
        # PID 1 is Sidekiq itself: the container's command replaces the image's ENTRYPOINT (tini).
        assert container['lifecycle'] == {'preStop': {'exec': {'command': ['/bin/sh', '-c', 'kill -TSTP 1; sleep 8']}}}
        assert spec['terminationGracePeriodSeconds'] == 90
        assert obj['spec']['progressDeadlineSeconds'] == 300
    # The scheduler must never run twice: Recreate; the other groups roll with a surge and never go below replicas.
    assert deployment(result, 'sidekiq', 'masto-sidekiq-scheduler')['spec']['strategy'] == {'type': 'Recreate'}
    assert deployment(result, 'sidekiq', 'masto-sidekiq-default')['spec']['strategy'] == {
        'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': 0}}


def test_sidekiq_command_without_a_timeout_is_unchanged():
    group = {'concurrency': 5, 'queues': [{'name': 'default', 'weight': None}]}
    assert sidekiq_command(group) == ['bundle', 'exec', 'sidekiq', '-c', '5', '-q', 'default']
    assert sidekiq_command(group, 25) == ['bundle', 'exec', 'sidekiq', '-c', '5', '-t', '25', '-q', 'default']
