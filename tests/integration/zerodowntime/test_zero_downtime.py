# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Zero downtime, measured (benchmarks/zero_downtime.py): playbooks/deploy.yml against the local cluster while a
watcher reads the EndpointSlices of the web and streaming Services (kept by the real EndpointSlice controller) and
the pods every 0.1 s. kubesim gives the pods a readiness delay and terminates them through their preStop hooks and
grace periods (tests/cluster/kubesim/lifecycle.go).

Acceptance: in every scenario the ready endpoints of web and streaming never go below their replicas
(maxUnavailable 0 with a surge); streaming pods are replaced only by the upgrade (each replacement drops every
WebSocket: streaming/index.js:1427-1443) and the plan's summary says so beforehand; an upgrade to an image that
never becomes ready fails soon after progressDeadlineSeconds with the old version still serving, and
mastodon_status says which version serves.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import zero_downtime  # noqa: E402  pylint: disable=wrong-import-position

COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(ROOT)))


@pytest.fixture(scope='module')
def report(kube_cluster, tmp_path_factory):
    if os.path.basename(os.path.dirname(os.path.dirname(ROOT))) != 'ansible_collections':
        raise RuntimeError('run the integration tests through scripts/run_tests.py (a collection copy)')
    started = time.time()
    out = zero_downtime.measure(kube_cluster.kubeconfig, tmp_path_factory.mktemp('zd'), COLLECTIONS)
    out['elapsed'] = time.time() - started
    print('\n' + zero_downtime.table(out))
    print('measured in %.0f s, %d samples' % (out['elapsed'], out['watch_samples']))
    return out


def scenario(report, key):
    (found,) = [s for s in report['scenarios'] if s['key'] == key]
    return found


def test_the_watch_saw_every_scenario(report):
    assert [s['key'] for s in report['scenarios']] == ['a', 'b', 'c', 'd', 'e']
    # one sample every 0.1 s (plus the time the two GETs take): the minimum below cannot hide between samples
    assert report['watch_samples'] > 100 and report['watch_errors'] == 0
    assert report['elapsed'] < 180


@pytest.mark.parametrize('key', ['a', 'b', 'c', 'd', 'e'])
def test_ready_endpoints_never_go_below_the_replicas(report, key):
    figures = scenario(report, key)
    for role in ('web', 'streaming'):
        assert figures[role]['min_ready'] >= figures[role]['replicas'] > 0, (role, figures)


def test_an_upgrade_rolls_everything_and_says_streaming_restarts(report):
    figures = scenario(report, 'a')
    assert not figures['failed']
    assert figures['streaming_restarted'] == 2
    assert figures['plan_says_streaming_restarts'] is True
    assert all(isinstance(figures['rollout_s'][role], float) for role in ('web', 'streaming', 'sidekiq')), figures


@pytest.mark.parametrize('key, rolled', [('b', {'web'}), ('c', {'sidekiq'}), ('d', {'web', 'sidekiq'})])
def test_changes_streaming_does_not_read_leave_its_pods_alone(report, key, rolled):
    figures = scenario(report, key)
    assert not figures['failed']
    assert figures['streaming_restarted'] == 0
    assert figures['plan_says_streaming_restarts'] is False
    assert set(role for role, took in figures['rollout_s'].items() if took is not None) == rolled, figures
    assert all(isinstance(figures['rollout_s'][role], float) for role in rolled), figures


def test_a_never_ready_image_fails_soon_and_the_old_version_keeps_serving(report):
    figures = scenario(report, 'e')
    assert figures['failed']
    assert 'social-web' in figures['message'] and 'timed out progressing' in figures['message']
    # Reported once the Deployment's progressDeadlineSeconds passed, not after the wait's own timeout (120 s).
    assert report['progress_deadline_s'] <= figures['reported_after_s'] < report['progress_deadline_s'] + 30
    assert figures['streaming_restarted'] == 0
    status = figures['status']
    assert status['healthy'] is False and status['web_rollout'] == 'failed'
    assert status['web_version'] == 'v4.6.6' and status['web_serving'] == ['v4.6.5']
    assert any('v4.6.6 (serving v4.6.5)' in line for line in status['table'])
