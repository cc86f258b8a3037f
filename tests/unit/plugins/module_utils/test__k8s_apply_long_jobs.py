# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Long Jobs (migrations) in Applier's wait: progress from the Job's log, a Job still running at the deadline left
running (detach_running_jobs), and never pruning a running Job. Against the real API server:
tests/integration/kubernetes/test_long_migrations.py."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _k8s_apply, _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import (
    ApplyError, Applier, RunningJobError, duration_text, job_elapsed)


def _stamp(seconds_ago):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() - seconds_ago))


def _job(conditions=None, started=720, rv='5'):
    return {'apiVersion': 'batch/v1', 'kind': 'Job',
            'metadata': {'name': 'm-migrate-pre-v4-7-6', 'namespace': 'ns', 'uid': 'u1', 'resourceVersion': rv,
                         'creationTimestamp': _stamp(started + 2)},
            'spec': {'template': {}},
            'status': {'startTime': _stamp(started), 'active': 1, 'conditions': conditions or []}}


COMPLETE = [{'type': 'Complete', 'status': 'True'}]
LOG_1 = ('fediops: schema_version=20260601000000\n'
         '== 20260702000000 AddThings: migrating =====================================\n')
LOG_2 = LOG_1 + ('== 20260702000000 AddThings: migrated (0.0100s) ============================\n\n'
                 '== 20260728145403 UpdateAccountSummariesToVersion3: migrating ==============\n')


class _FakeClient(object):
    """KubeClient's path/request/watch for one Job: the watch yields `events` (each after its delay) then stays
    quiet until its timeout; the Job's pod log is `self.log` (changed by the test as time passes)."""

    def __init__(self, events=(), log=''):
        self.events = list(events)
        self.log = log
        self.calls = []
        self._lock = threading.Lock()

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        return '/apis/batch/v1/namespaces/%s/jobs' % namespace + ('/' + name if name else '')

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        with self._lock:
            self.calls.append((method, path, dict(query or {})))
        if path.endswith('/pods'):
            return 200, {'items': [{'metadata': {'name': 'm-pod', 'namespace': 'ns', 'creationTimestamp': _stamp(700)}}]}
        if path.endswith('/log'):
            return 200, self.log
        if method == 'DELETE':
            return 200, {}
        return 200, {'metadata': {'resourceVersion': '9'}, 'items': []}

    def watch(self, path, query=None, timeout=60):
        with self._lock:
            self.calls.append(('WATCH', path, dict(query or {})))
        end = time.monotonic() + timeout
        while self.events:
            delay, event = self.events.pop(0)
            time.sleep(delay)
            yield event
        time.sleep(max(0, min(0.2, end - time.monotonic())))


def _applier(client, **kwargs):
    applier = Applier(client, namespace='ns', wait=True, **kwargs)
    applier.PROGRESS_TICK = 0.02
    applier.LOG_POLL = 0.0
    return applier


def test_running_job_at_the_deadline_is_left_running_with_what_it_is_doing():
    client = _FakeClient(log=LOG_2)
    applier = _applier(client, wait_timeout=1, detach_running_jobs=True,
                       describe_job_log=_migrations.describe_progress)
    started = time.monotonic()
    applier.wait_for([(_job(), _job())])
    assert 0.9 < time.monotonic() - started < 6
    assert len(applier.running_jobs) == 1
    entry = applier.running_jobs[0]
    assert entry['name'] == 'm-migrate-pre-v4-7-6' and 720 <= entry['elapsed_seconds'] < 730
    assert entry['activity'] == 'migration 20260728145403 UpdateAccountSummariesToVersion3'
    assert entry['msg'] == ('Job ns/m-migrate-pre-v4-7-6 is still running for 12 min, now at migration 20260728145403 '
                            'UpdateAccountSummariesToVersion3; it was left running (a later run re-attaches to it)')
    assert applier.result(False)['running_jobs'] == [entry]
    assert not [c for c in client.calls if c[0] == 'DELETE']  # nothing deletes it


def test_running_job_at_the_deadline_fails_without_detach():
    client = _FakeClient(log=LOG_2)
    applier = _applier(client, wait_timeout=1)
    with pytest.raises(ApplyError, match=r'timed out after 1s waiting for: Job ns/m-migrate-pre-v4-7-6: running'):
        applier.wait_for([(_job(), _job())])
    assert applier.running_jobs == []


def test_a_failed_job_still_fails_with_detach():
    failed = _job([{'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded', 'message': 'x'}], rv='6')
    client = _FakeClient(events=[(0.1, {'type': 'MODIFIED', 'raw_object': failed})])
    applier = _applier(client, wait_timeout=5, detach_running_jobs=True)
    with pytest.raises(ApplyError, match='failed: BackoffLimitExceeded'):
        applier.wait_for([(_job(), _job())])


def test_a_deployment_still_rolling_out_is_never_detached():
    dep = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'web', 'namespace': 'ns', 'generation': 1, 'resourceVersion': '3'},
           'spec': {'replicas': 1}, 'status': {'observedGeneration': 1, 'replicas': 1, 'updatedReplicas': 1}}
    applier = _applier(_FakeClient(), wait_timeout=1, detach_running_jobs=True)
    with pytest.raises(ApplyError, match='timed out after 1s'):
        applier.wait_for([(dep, dep)])


def test_progress_once_per_change_of_the_migration_then_complete():
    """The log is read while waiting; progress() is called when the migration changes, not on every tick."""
    client = _FakeClient(log=LOG_1)
    shown = []
    applier = _applier(client, wait_timeout=10, progress=shown.append, describe_job_log=_migrations.describe_progress)

    def later():
        time.sleep(0.4)
        client.log = LOG_2
        time.sleep(0.4)
        client.events.append((0, {'type': 'MODIFIED', 'raw_object': dict(_job(COMPLETE, rv='7'), status={
            'startTime': _stamp(900), 'completionTime': _stamp(0), 'conditions': COMPLETE})}))

    threading.Thread(target=later).start()
    applier.wait_for([(_job(), _job())])
    assert shown == ['running migration 20260702000000 AddThings (12 min)',
                     'running migration 20260728145403 UpdateAccountSummariesToVersion3 (12 min)',
                     'complete after 15 min']


def test_progress_heartbeat_repeats_an_unchanged_state():
    client = _FakeClient(log=LOG_1)
    shown = []
    applier = _applier(client, wait_timeout=1, progress=shown.append, describe_job_log=_migrations.describe_progress,
                       detach_running_jobs=True)
    applier.HEARTBEAT = 0.3
    applier.wait_for([(_job(), _job())])
    assert 2 <= len(shown) <= 5, shown
    assert set(shown) == {'running migration 20260702000000 AddThings (12 min)'}


def test_no_log_read_without_a_describer():
    client = _FakeClient(log=LOG_1)
    shown = []
    applier = _applier(client, wait_timeout=0.5, progress=shown.append, detach_running_jobs=True)
    applier.wait_for([(_job(), _job())])
    assert shown == ['running (12 min)']
    assert not [c for c in client.calls if c[1].endswith('/log')]
    assert applier.running_jobs[0]['msg'].startswith('Job ns/m-migrate-pre-v4-7-6 is still running for 12 min;')


def test_log_that_cannot_be_read_does_not_fail_the_wait():
    client = _FakeClient()

    def refused(*args, **kwargs):
        raise _k8s_apply.KubeError('refused', status=0)

    client.request = refused
    applier = _applier(client, wait_timeout=0.5, detach_running_jobs=True, describe_job_log=_migrations.describe_progress)
    applier.wait_for([(_job(), _job())])
    assert applier.running_jobs[0]['activity'] is None


def test_running_job_is_never_pruned():
    client = _FakeClient(log=LOG_2)
    applier = Applier(client, namespace='ns', apply_set='s', describe_job_log=_migrations.describe_progress)
    done = _job(COMPLETE)
    failed = _job([{'type': 'Failed', 'status': 'True'}])
    applier.check_prunable([done, failed, {'kind': 'ConfigMap', 'metadata': {'name': 'c'}, 'status': {}}])  # no error
    with pytest.raises(RunningJobError) as info:
        applier.check_prunable([done, _job()])
    assert [job['metadata']['name'] for job in info.value.jobs] == ['m-migrate-pre-v4-7-6']
    assert ('not pruning Job ns/m-migrate-pre-v4-7-6: running for 12 min, now at migration 20260728145403 '
            'UpdateAccountSummariesToVersion3: still running') in info.value.msg
    Applier(client, namespace='ns', apply_set='s', prune_running_jobs=True).check_prunable([_job()])


def test_job_elapsed_and_duration_text():
    assert duration_text(40) == '40 s' and duration_text(95) == '1 min' and duration_text(7320) == '2 h 02 min'
    job = _job(started=600)
    assert 600 <= job_elapsed(job) < 605
    job['status']['completionTime'] = job['status']['startTime']
    assert job_elapsed(job) == 0
    assert job_elapsed({'metadata': {}}) is None
