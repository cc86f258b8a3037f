# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import hashlib

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError, api_path
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import (
    MASK, MASK_CHANGED, apply_was_noop, applyset_id, comparable, diff_pair, flatten_definitions, format_status_error, group_kind,
    job_state, order_objects, parse_group_kind, rollout_state, logged_arguments, strip_object, tooling_base)


def obj(kind, name, api_version='v1', **extra):
    out = {'apiVersion': api_version, 'kind': kind, 'metadata': {'name': name}}
    out.update(extra)
    return out


def test_order_dependency_tiers():
    objs = [obj('HTTPRoute', 'r', 'gateway.networking.k8s.io/v1'), obj('Deployment', 'd', 'apps/v1'),
            obj('Job', 'j', 'batch/v1'), obj('Service', 's'), obj('ConfigMap', 'c'), obj('Secret', 'x'),
            obj('Namespace', 'n'), obj('Widget', 'w', 'example.com/v1'), obj('ServiceAccount', 'sa'),
            obj('PersistentVolumeClaim', 'p'), obj('CronJob', 'cj', 'batch/v1'),
            obj('HorizontalPodAutoscaler', 'h', 'autoscaling/v2'), obj('PodDisruptionBudget', 'pdb', 'policy/v1'),
            obj('StatefulSet', 'ss', 'apps/v1'), obj('RoleBinding', 'rb', 'rbac.authorization.k8s.io/v1'),
            obj('Role', 'role', 'rbac.authorization.k8s.io/v1')]
    tiers = order_objects(objs)
    flat = [o['kind'] for t in tiers for o in t]
    expect = ['Namespace', 'ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap', 'PersistentVolumeClaim',
              'Service', 'Deployment', 'Job', 'CronJob', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'HTTPRoute',
              'Widget']
    for before, after in zip(expect, expect[1:]):
        assert flat.index(before) < flat.index(after), (before, after, flat)
    # Deployments and StatefulSets share a tier (applied concurrently); Secret and ConfigMap too.
    assert any(set(o['kind'] for o in t) == {'Deployment', 'StatefulSet'} for t in tiers)
    assert [o['kind'] for t in order_objects(objs, reverse=True) for o in t][0] == 'Widget'
    assert [o['kind'] for t in order_objects(objs, reverse=True) for o in t][-1] == 'Namespace'


def test_applyset_id_matches_kep_3659():
    digest = hashlib.sha256(b'web.mastodon.Secret.').digest()
    expected = 'applyset-' + base64.urlsafe_b64encode(digest).decode().rstrip('=') + '-v1'
    assert applyset_id('web', 'mastodon') == expected
    # Known value computed by kubectl for `--applyset=web -n mastodon` (base64url without padding, 43 chars).
    assert len(expected) == len('applyset-') + 43 + len('-v1')
    assert '=' not in expected and '+' not in expected and '/' not in expected
    assert applyset_id('web', 'mastodon') != applyset_id('web', 'other')
    assert applyset_id('x', 'ns', 'ConfigMap') != applyset_id('x', 'ns')


def test_group_kinds_and_tooling():
    assert group_kind('v1', 'ConfigMap') == 'ConfigMap'
    assert group_kind('apps/v1', 'Deployment') == 'Deployment.apps'
    assert parse_group_kind('Deployment.apps') == ('apps', 'Deployment')
    assert parse_group_kind('HTTPRoute.gateway.networking.k8s.io') == ('gateway.networking.k8s.io', 'HTTPRoute')
    assert parse_group_kind('Secret') == ('', 'Secret')
    assert tooling_base('kubectl/v1.34.0') == 'kubectl'
    assert tooling_base('helm/v3') == 'helm'
    assert tooling_base('kubectl') == 'kubectl'
    assert api_path('v1') == '/api/v1'
    assert api_path('apps/v1') == '/apis/apps/v1'


def test_flatten_definitions_yaml_and_lists():
    text = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n' \
           '  - {apiVersion: v1, kind: Secret, metadata: {name: b}}\n'
    objs = flatten_definitions([text, obj('Service', 'c')])
    assert [(o['kind'], o['metadata']['name']) for o in objs] == [('ConfigMap', 'a'), ('Secret', 'b'), ('Service', 'c')]
    with pytest.raises(KubeError, match='needs apiVersion, kind and metadata.name'):
        flatten_definitions([{'kind': 'ConfigMap', 'metadata': {}}])
    with pytest.raises(KubeError, match='invalid YAML'):
        flatten_definitions(['a: [b'])


def test_secret_masking():
    live = obj('Secret', 's', data={'A': 'b25l', 'B': 'dHdv'},
               metadata={'name': 's', 'managedFields': [{'manager': 'x'}],
                         'annotations': {'kubectl.kubernetes.io/last-applied-configuration': '{"data": {"A": "b25l"}}'}})
    stripped = strip_object(live)
    assert stripped['data'] == {'A': MASK, 'B': MASK}
    assert 'managedFields' not in stripped['metadata']
    assert stripped['metadata']['annotations']['kubectl.kubernetes.io/last-applied-configuration'] == MASK
    assert live['data']['A'] == 'b25l'  # the input is not modified
    new = obj('Secret', 's', data={'A': 'b25l', 'B': 'Y2hhbmdlZA==', 'C': 'bmV3'})
    before, after = diff_pair(live, new)
    assert before['data'] == {'A': MASK, 'B': MASK_CHANGED}
    assert after['data'] == {'A': MASK, 'B': MASK_CHANGED, 'C': MASK_CHANGED}
    before, after = diff_pair(None, obj('Secret', 's', stringData={'P': 'x'}))
    assert before == {} and after['stringData'] == {'P': MASK}
    cm = obj('ConfigMap', 'c', data={'A': 'visible'})
    assert strip_object(cm)['data'] == {'A': 'visible'}


def test_comparable_ignores_timestamps_and_versions():
    a = obj('ConfigMap', 'c', data={'A': '1'})
    a['metadata'].update(resourceVersion='5', managedFields=[{'manager': 'm', 'time': '2024-01-01T00:00:00Z'}])
    b = obj('ConfigMap', 'c', data={'A': '1'})
    b['metadata'].update(resourceVersion='9', managedFields=[{'manager': 'm', 'time': '2025-01-01T00:00:00Z'}])
    assert comparable(a) == comparable(b)
    b['data']['A'] = '2'
    assert comparable(a) != comparable(b)


def _deployment(rv, replicas, image, our_time='2026-01-01T00:00:00Z'):
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment',
            'metadata': {'name': 'web', 'resourceVersion': rv, 'managedFields': [
                {'manager': 'fediops.mastodon', 'operation': 'Apply', 'time': our_time, 'fieldsV1': {'f:spec': {}}},
                {'manager': 'kube-controller-manager', 'operation': 'Update', 'time': '2026-01-02T00:00:00Z'}]},
            'spec': {'replicas': replicas, 'template': {'spec': {'containers': [{'name': 'web', 'image': image}]}}},
            'status': {'replicas': replicas}}


def test_noop_apply_while_a_controller_writes_is_unchanged():
    """An HPA scaling the Deployment between our read and our apply moves resourceVersion; our apply still
    changed nothing (molecule's idempotence saw a false `changed` from this race)."""
    desired = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'web'},
               'spec': {'template': {'spec': {'containers': [{'name': 'web', 'image': 'a:1'}]}}}}
    before = _deployment('10', 1, 'a:1')
    scaled = _deployment('11', 2, 'a:1')
    assert apply_was_noop(desired, before, before, 'fediops.mastodon')
    assert apply_was_noop(desired, before, scaled, 'fediops.mastodon')


def test_real_change_is_configured_even_within_the_same_second():
    desired = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'web'},
               'spec': {'template': {'spec': {'containers': [{'name': 'web', 'image': 'a:2'}]}}}}
    before = _deployment('10', 1, 'a:1')
    # Same timestamp (second resolution) and fields, but the value we set differs.
    assert not apply_was_noop(desired, before, _deployment('11', 1, 'a:2'), 'fediops.mastodon')
    # The API server stamped our entry anew.
    assert not apply_was_noop(desired, before, _deployment('11', 1, 'a:1', our_time='2026-01-01T00:00:05Z'),
                              'fediops.mastodon')
    # An object we never applied before (no entry of ours) whose resourceVersion moved.
    foreign = _deployment('10', 1, 'a:1')
    foreign['metadata']['managedFields'] = foreign['metadata']['managedFields'][1:]
    assert not apply_was_noop(desired, foreign, _deployment('11', 1, 'a:1'), 'fediops.mastodon')


def test_format_conflict_and_invalid():
    body = {'kind': 'Status', 'code': 409, 'message': 'Apply failed with 1 conflict',
            'details': {'causes': [{'reason': 'FieldManagerConflict', 'message': 'conflict with "helm": .data.MODE',
                                    'field': '.data.MODE'}]}}
    target = obj('ConfigMap', 'c')
    target['metadata']['namespace'] = 'ns'
    msg = format_status_error(target, 409, body)
    assert msg.startswith('ConfigMap ns/c: conflict') and '.data.MODE' in msg and '"helm"' in msg
    assert 'force_conflicts' in msg
    body = {'code': 422, 'message': 'invalid', 'details': {'causes': [
        {'reason': 'FieldValueInvalid', 'message': 'Invalid value: field is immutable', 'field': 'spec.selector'}]}}
    assert format_status_error(target, 422, body) == \
        'ConfigMap ns/c is invalid (HTTP 422): spec.selector: Invalid value: field is immutable'
    assert format_status_error(target, 500, {'message': 'boom'}) == 'ConfigMap ns/c: HTTP 500: boom'


def test_rollout_state():
    dep = obj('Deployment', 'd', 'apps/v1', spec={'replicas': 2})
    dep['metadata']['generation'] = 2
    dep['status'] = {'observedGeneration': 1}
    assert rollout_state(dep)[0] == 'pending'
    dep['status'] = {'observedGeneration': 2, 'replicas': 2, 'updatedReplicas': 2, 'readyReplicas': 1,
                     'availableReplicas': 1}
    assert rollout_state(dep)[0] == 'pending'
    dep['status'].update(readyReplicas=2, availableReplicas=2)
    assert rollout_state(dep)[0] == 'ok'
    dep['status']['conditions'] = [{'type': 'Progressing', 'status': 'False', 'reason': 'ProgressDeadlineExceeded',
                                    'message': 'ReplicaSet "d-1" has timed out progressing.'}]
    state, msg = rollout_state(dep)
    assert state == 'failed' and 'timed out progressing' in msg


def test_job_state():
    job = obj('Job', 'j', 'batch/v1')
    assert job_state(job)[0] == 'pending'
    job['status'] = {'conditions': [{'type': 'Complete', 'status': 'True'}]}
    assert job_state(job)[0] == 'ok'
    job['status'] = {'conditions': [{'type': 'FailureTarget', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                                     'message': 'Job has reached the specified backoff limit'}]}
    state, msg = job_state(job)
    assert state == 'failed' and 'BackoffLimitExceeded' in msg


class _FakeJobClient(object):
    """Just enough of KubeClient for Applier.apply_one on one Job: GET, DELETE and the apply PATCH."""

    def __init__(self, live):
        self.live = live
        self.calls = []

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        return '/apis/%s/namespaces/%s/jobs/%s' % (api_version, namespace, name)

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append((method, dict(query or {}), body))
        if method == 'GET':
            return (200, self.live) if self.live else (404, {'kind': 'Status', 'reason': 'NotFound'})
        if method == 'DELETE':
            if not (body or {}).get('dryRun'):
                self.live = None
            return 200, {'kind': 'Status', 'status': 'Success'}
        created = dict(body, metadata=dict(body['metadata'], uid='new', resourceVersion='2'))
        if (query or {}).get('dryRun'):
            return (200 if self.live else 201), created
        status = 200 if self.live else 201
        self.live = created
        return status, created


def _failed_job():
    job = obj('Job', 'migrate', 'batch/v1', spec={'template': {}})
    job['metadata'].update(namespace='ns', uid='old', resourceVersion='1')
    job['status'] = {'conditions': [{'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded'}]}
    return job


def _declared():
    job = obj('Job', 'migrate', 'batch/v1', spec={'template': {}})
    job['metadata']['namespace'] = 'ns'
    return job


@pytest.mark.parametrize('check_mode', [False, True])
def test_failed_job_is_replaced(check_mode):
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier
    client = _FakeJobClient(_failed_job())
    applier = Applier(client, namespace='ns', check_mode=check_mode)
    entry, dummy = applier.apply_one(_declared())
    assert entry['action'] == 'replaced'
    deletes = [c for c in client.calls if c[0] == 'DELETE']
    assert len(deletes) == 1
    assert deletes[0][1]['propagationPolicy'] == 'Background'
    assert deletes[0][2]['preconditions'] == {'uid': 'old'}
    if check_mode:
        assert deletes[0][1]['dryRun'] == 'All'
        assert deletes[0][2]['dryRun'] == ['All']  # the server reads the options from the body when there is one
        assert [c[0] for c in client.calls] == ['GET', 'DELETE']  # nothing created
        assert client.live['metadata']['uid'] == 'old'
    else:
        assert [c[0] for c in client.calls] == ['GET', 'DELETE', 'GET', 'PATCH']
        assert client.live['metadata']['uid'] == 'new'


def test_failed_job_is_kept_without_replace_failed_jobs():
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier
    client = _FakeJobClient(_failed_job())
    entry, dummy = Applier(client, namespace='ns', replace_failed_jobs=False).apply_one(_declared())
    assert entry['action'] != 'replaced'
    assert 'DELETE' not in [c[0] for c in client.calls]


def test_running_or_complete_job_is_not_replaced():
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier
    for conditions in ([], [{'type': 'Complete', 'status': 'True'}], [{'type': 'Failed', 'status': 'False'}]):
        live = _failed_job()
        live['status'] = {'conditions': conditions}
        client = _FakeJobClient(live)
        Applier(client, namespace='ns').apply_one(_declared())
        assert 'DELETE' not in [c[0] for c in client.calls]


def test_logged_arguments_mask_secret_values_only():
    definitions = [
        obj('Secret', 's', data={'a': 'c2VjcmV0LW9uZQ=='}, stringData={'b': 'secret-two'}),
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {c: public}\n',
    ]
    logged = logged_arguments({'definitions': definitions, 'namespace': 'ns'})
    assert logged['namespace'] == 'ns'
    secret, config_map = logged['definitions']
    assert secret['data'] == {'a': MASK} and secret['stringData'] == {'b': MASK}
    assert config_map['data'] == {'c': 'public'}
    assert definitions[0]['data'] == {'a': 'c2VjcmV0LW9uZQ=='}
    assert logged_arguments({'definitions': [42]})['definitions'] == MASK


# ---------------------------------------------------------------- waits that survive API server restarts

def _watched_deployment(ready, rv, generation=1):
    dep = obj('Deployment', 'web', 'apps/v1', spec={'replicas': 1})
    dep['metadata'].update(namespace='ns', resourceVersion=rv, generation=generation)
    dep['status'] = {'observedGeneration': generation, 'replicas': 1, 'updatedReplicas': 1,
                     'readyReplicas': 1 if ready else 0, 'availableReplicas': 1 if ready else 0}
    return dep


class _FakeWatchClient(object):
    """KubeClient's path/request/watch with scripted watch outcomes: each entry of ``watches`` is a list of
    events to yield and/or a KubeError to raise (as KubeClient.watch does for 410, refused connections, ...)."""

    def __init__(self, watches, listed=None, list_rv='500'):
        self.watches = list(watches)
        self.listed = listed
        self.list_rv = list_rv
        self.calls = []

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        return '/apis/apps/v1/namespaces/%s/deployments' % namespace + ('/' + name if name else '')

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append(('LIST', dict(query or {})))
        items = [self.listed] if self.listed else []
        return 200, {'kind': 'DeploymentList', 'metadata': {'resourceVersion': self.list_rv}, 'items': items}

    def watch(self, path, query=None, timeout=60):
        self.calls.append(('WATCH', dict(query or {})))
        script = self.watches.pop(0) if self.watches else [KubeError('no more watches scripted', status=403)]
        for step in script:
            if isinstance(step, Exception):
                raise step
            yield step


def _run_wait(client, body, timeout=30):
    import queue
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier
    applier = Applier(client, namespace='ns', wait=True, wait_timeout=timeout)
    results = queue.Queue()
    declared = obj('Deployment', 'web', 'apps/v1')
    declared['metadata']['namespace'] = 'ns'
    applier._wait_thread(declared, body, __import__('time').monotonic() + timeout, results)
    dummy, state, msg, current = results.get_nowait()
    return state, msg, current


@pytest.fixture
def sleeps(monkeypatch):
    """time.sleep of the wait recorded instead of slept."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _k8s_apply
    slept = []
    monkeypatch.setattr(_k8s_apply.time, 'sleep', slept.append)
    return slept


EXPIRED = KubeError('watch of /apis/apps/v1/namespaces/ns/deployments failed: Expired: too old resource version: 10 (300)',
                    status=410)
REFUSED = KubeError('cannot reach the Kubernetes API server https://127.0.0.1:6443: [Errno 111] Connection refused',
                    status=0)


def test_wait_relists_and_rewatches_after_410(sleeps):
    """HTTP 410 (the API server's watch cache restarted or etcd compacted) is not a failure: the object is
    listed for a fresh resourceVersion and watched again from the LIST's resourceVersion."""
    client = _FakeWatchClient([[EXPIRED], [{'type': 'MODIFIED', 'raw_object': _watched_deployment(True, '501')}]],
                              listed=_watched_deployment(False, '300'), list_rv='500')
    state, msg, current = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'ok', msg
    assert current['metadata']['resourceVersion'] == '501'
    assert [(c[0], c[1].get('resourceVersion')) for c in client.calls] == [('WATCH', '10'), ('LIST', None), ('WATCH', '500')]
    assert client.calls[1][1] == {'fieldSelector': 'metadata.name=web'}
    assert len(sleeps) == 1 and sleeps[0] <= 0.5


def test_wait_handles_error_event_with_code_410(sleeps):
    """An ERROR event with a 410 Status inside the stream (what a watch from an expired resourceVersion gets)."""
    error_event = {'type': 'ERROR', 'raw_object': {'kind': 'Status', 'status': 'Failure', 'code': 410,
                                                   'reason': 'Expired', 'message': 'too old resource version: 10 (300)'}}
    client = _FakeWatchClient([[error_event], [{'type': 'MODIFIED', 'raw_object': _watched_deployment(True, '501')}]],
                              listed=_watched_deployment(False, '300'))
    state, msg, dummy = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'ok', msg
    assert [c[0] for c in client.calls] == ['WATCH', 'LIST', 'WATCH']


def test_wait_survives_dropped_and_refused_connections(sleeps):
    """A restarting API server: the stream breaks, then connections are refused for a while (backing off)."""
    pending = _watched_deployment(False, '11')
    client = _FakeWatchClient([[{'type': 'MODIFIED', 'raw_object': pending}, REFUSED],
                               [{'type': 'MODIFIED', 'raw_object': _watched_deployment(True, '502')}]],
                              listed=_watched_deployment(False, '300'))
    # the LISTs between the watches are refused too while the server is down
    answers = [REFUSED, REFUSED, None]
    plain_request = client.request

    def request(*args, **kwargs):
        answer = answers.pop(0) if answers else None
        if answer is not None:
            client.calls.append(('LIST-refused', {}))
            raise answer
        return plain_request(*args, **kwargs)

    client.request = request
    state, msg, dummy = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'ok', msg
    assert sleeps == [0.25, 0.5, 1.0]  # backoff grows while nothing answers
    assert [c[0] for c in client.calls] == ['WATCH', 'LIST-refused', 'LIST-refused', 'LIST', 'WATCH']


def test_wait_backoff_resets_after_progress(sleeps):
    client = _FakeWatchClient([[EXPIRED], [{'type': 'MODIFIED', 'raw_object': _watched_deployment(False, '501')}, EXPIRED],
                               [{'type': 'MODIFIED', 'raw_object': _watched_deployment(True, '601')}]],
                              listed=_watched_deployment(False, '300'))
    state, dummy, dummy = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'ok'
    assert sleeps == [0.25, 0.25]


def test_wait_relist_sees_the_object_ready_or_gone(sleeps):
    client = _FakeWatchClient([[EXPIRED]], listed=_watched_deployment(True, '300'))
    state, dummy, dummy = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'ok'
    assert [c[0] for c in client.calls] == ['WATCH', 'LIST']  # ready in the list: no second watch

    client = _FakeWatchClient([[EXPIRED]], listed=None)
    state, msg, dummy = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'failed' and msg == 'Deployment ns/web was deleted while waiting'


def test_wait_fails_at_once_on_other_errors(sleeps):
    forbidden = KubeError('watch of /apis/apps/v1/namespaces/ns/deployments failed: Forbidden', status=403)
    client = _FakeWatchClient([[forbidden]])
    state, msg, dummy = _run_wait(client, _watched_deployment(False, '10'))
    assert state == 'failed' and 'Forbidden' in msg
    assert [c[0] for c in client.calls] == ['WATCH'] and sleeps == []


def test_wait_retries_are_bounded_by_the_deadline(monkeypatch):
    """Nothing answers: the wait ends when its timeout is spent, naming what it last saw and why it retried."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _k8s_apply
    clock = [1000.0]
    monkeypatch.setattr(_k8s_apply.time, 'monotonic', lambda: clock[0])
    monkeypatch.setattr(_k8s_apply.time, 'sleep', lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    client = _FakeWatchClient([[REFUSED]] * 1000)
    client.request = lambda *args, **kwargs: (dummy for dummy in ()).throw(REFUSED)
    applier = _k8s_apply.Applier(client, namespace='ns', wait=True, wait_timeout=30)
    declared = obj('Deployment', 'web', 'apps/v1')
    declared['metadata']['namespace'] = 'ns'
    import queue
    results = queue.Queue()
    applier._wait_thread(declared, _watched_deployment(False, '10'), clock[0] + 30, results)
    dummy, state, msg, dummy = results.get_nowait()
    assert state == 'pending'
    assert 'Connection refused' in msg and '0 readyReplicas' in msg
    assert 1030.0 <= clock[0] <= 1030.0 + 1e-6  # the last backoff is cut to the deadline
    assert len(client.watches) == 999  # one watch, then only LISTs (refused) until the deadline


def test_watch_backoff():
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import watch_backoff
    assert [watch_backoff(n) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert watch_backoff(10 ** 6) == 5.0
