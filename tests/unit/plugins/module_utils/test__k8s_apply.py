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

def _waited_deployment(rv, ready=0, generation=1):
    dep = obj('Deployment', 'web', 'apps/v1', spec={'replicas': 1})
    dep['metadata'].update(namespace='ns', resourceVersion=rv, generation=generation, uid='u1')
    dep['status'] = {'observedGeneration': generation, 'replicas': 1, 'updatedReplicas': 1,
                     'readyReplicas': ready, 'availableReplicas': ready}
    return dep


class _FakeWatchClient(object):
    """Just enough of KubeClient for Applier.wait_for: LIST (GET of the collection) and watch. Each list/watch
    call takes the next scripted step: an exception to raise, or the LIST answer / the watch events.

    kube-apiserver (k8s.io/apiserver v0.34.4) answers a watch from a resourceVersion older than its watch cache
    with an ERROR event whose object is a Status with code 410 ("too old resource version",
    pkg/storage/cacher/watch_cache.go errors.NewResourceExpired), and the kubernetes client raises it as
    ApiException(410) when timeout_seconds is set (kubernetes/watch/watch.py, stream: disable_retries); a LIST
    answers with the store's current resourceVersion in metadata.resourceVersion."""

    def __init__(self, lists=(), watches=()):
        self.lists = list(lists)
        self.watches = list(watches)
        self.calls = []

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        return '/apis/%s/namespaces/%s/deployments' % (api_version, namespace)

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append(('list', dict(query or {})))
        step = self.lists.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def watch(self, path, query=None, timeout=60):
        self.calls.append(('watch', dict(query or {})))
        step = self.watches.pop(0) if self.watches else KubeError('connection refused', status=0)
        if isinstance(step, Exception):
            raise step
        yield from step


def _list_answer(rv, *items):
    return 200, {'kind': 'DeploymentList', 'metadata': {'resourceVersion': rv}, 'items': list(items)}


def _applier(client, timeout=10):
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier
    return Applier(client, namespace='ns', wait=True, wait_timeout=timeout)


@pytest.fixture
def fast_retries(monkeypatch):
    from ansible_collections.fediops.mastodon.plugins.module_utils import _k8s_apply
    monkeypatch.setattr(_k8s_apply, 'WATCH_RETRY_MIN', 0.01)
    monkeypatch.setattr(_k8s_apply, 'WATCH_RETRY_MAX', 0.05)


def _watch_rvs(client):
    return [q.get('resourceVersion') for what, q in client.calls if what == 'watch']


@pytest.mark.parametrize('expired', [
    KubeError('watch failed: Expired: too old resource version: 5 (90)', status=410),
    [{'type': 'ERROR', 'raw_object': {'kind': 'Status', 'code': 410, 'reason': 'Expired',
                                      'message': 'too old resource version: 5 (90)'}}],
], ids=['http-410', 'error-event-410'])
def test_wait_relists_after_410(fast_retries, expired):
    client = _FakeWatchClient(
        lists=[_list_answer('100', _waited_deployment('95'))],
        watches=[expired, [{'type': 'MODIFIED', 'raw_object': _waited_deployment('101', ready=1)}]])
    _applier(client).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])
    assert [c[0] for c in client.calls] == ['watch', 'list', 'watch']
    assert _watch_rvs(client) == ['5', '100']  # re-watched from the LIST's resourceVersion, not the stale one
    assert client.calls[1][1] == {'fieldSelector': 'metadata.name=web'}


def test_wait_survives_an_api_server_restart(fast_retries):
    """The watch drops, the API server refuses connections, then answers 503 while starting, then serves."""
    client = _FakeWatchClient(
        lists=[KubeError('cannot reach the Kubernetes API server: connection refused', status=0),
               (503, {'kind': 'Status', 'code': 503, 'message': 'the server is currently unable to handle the request'}),
               _list_answer('200', _waited_deployment('150'))],
        watches=[KubeError('cannot reach the Kubernetes API server: Connection broken', status=0),
                 [{'type': 'MODIFIED', 'raw_object': _waited_deployment('201', ready=1)}]])
    _applier(client).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])
    assert [c[0] for c in client.calls] == ['watch', 'list', 'list', 'list', 'watch']
    assert _watch_rvs(client) == ['5', '200']


def test_wait_ends_at_once_when_the_relist_shows_ready(fast_retries):
    client = _FakeWatchClient(lists=[_list_answer('100', _waited_deployment('99', ready=1))],
                              watches=[KubeError('gone', status=410)])
    _applier(client).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])
    assert [c[0] for c in client.calls] == ['watch', 'list']


def test_wait_resumes_a_watch_that_ends_early(fast_retries):
    client = _FakeWatchClient(lists=[_list_answer('100', _waited_deployment('99'))],
                              watches=[[], [{'type': 'MODIFIED', 'raw_object': _waited_deployment('101', ready=1)}]])
    _applier(client).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])
    assert _watch_rvs(client) == ['5', '100']


def test_wait_deleted_during_relist_fails(fast_retries):
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import ApplyError
    client = _FakeWatchClient(lists=[_list_answer('100')], watches=[KubeError('gone', status=410)])
    with pytest.raises(ApplyError, match='Deployment ns/web was deleted while waiting'):
        _applier(client).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])


def test_wait_forbidden_fails_without_retry(fast_retries):
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import ApplyError
    client = _FakeWatchClient(watches=[KubeError('watch failed: Forbidden', status=403)])
    with pytest.raises(ApplyError, match='Deployment ns/web: watch failed: Forbidden'):
        _applier(client).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])
    assert len(client.calls) == 1


def test_wait_timeout_bounds_the_retries(fast_retries):
    """An API server that never comes back: the wait ends at its timeout, naming the last error."""
    import time
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import ApplyError
    refused = KubeError('cannot reach the Kubernetes API server https://127.0.0.1:6443: connection refused', status=0)

    class Down(_FakeWatchClient):
        def request(self, *args, **kwargs):
            self.calls.append(('list', {}))
            raise refused

    client = Down(watches=[refused])
    t0 = time.monotonic()
    with pytest.raises(ApplyError) as info:
        _applier(client, timeout=1).wait_for([(_waited_deployment('5'), _waited_deployment('5'))])
    assert time.monotonic() - t0 < 5
    assert 'timed out after 1s waiting for' in info.value.msg
    assert 'watch interrupted, resuming: cannot reach the Kubernetes API server' in info.value.msg
    assert len(client.calls) > 3


# ---------------------------------------------------------------- namespaced credentials

class _FakeNamespacedClient(object):
    """KubeClient for Applier.present with ApplySets, as credentials bound to a namespaced Role see the API server:
    namespaced requests succeed, a cluster-wide LIST of Namespaces is 403 (kube-apiserver's RBAC answer,
    plugin/pkg/auth/authorizer/rbac), unless `cluster_wide`."""

    KINDS = {'v1': {'ConfigMap': ('configmaps', True), 'Secret': ('secrets', True), 'Namespace': ('namespaces', False)}}

    def __init__(self, parent, live, cluster_wide=False):
        self.parent = parent
        self.live = live
        self.cluster_wide = cluster_wide
        self.calls = []

    def discover(self, api_version):
        return self.KINDS.get(api_version)

    def resource(self, api_version, kind):
        return self.KINDS[api_version][kind]

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        plural, namespaced = self.resource(api_version, kind)
        parts = ['/api/v1'] + (['namespaces', namespace] if namespaced and namespace else []) + [plural]
        return '/'.join(parts + ([name] if name else []))

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append((method, path))
        if method == 'GET' and path.endswith('/secrets/masto-set-config'):
            return 200, self.parent
        if method == 'GET' and path == '/api/v1/namespaces':
            if not self.cluster_wide:
                return 403, {'kind': 'Status', 'code': 403, 'message': 'namespaces is forbidden: User '
                             '"system:serviceaccount:social:mastodon-deployer" cannot list resource "namespaces"'}
            return 200, {'items': [item for item in self.live if item['kind'] == 'Namespace']}
        if method == 'GET':
            kind = 'ConfigMap' if '/configmaps' in path else 'Secret'
            return 200, {'items': [item for item in self.live if item['kind'] == kind]}
        if method == 'PATCH':
            out = dict(body, metadata=dict(body['metadata'], resourceVersion='7'))
            if body['kind'] == 'Secret' and body['metadata']['name'] == 'masto-set-config':
                self.parent = out
            return 200, out
        if method == 'DELETE':
            return 200, {'kind': 'Status', 'status': 'Success'}
        raise AssertionError((method, path))


def _applyset_parent(gks):
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import (
        APPLYSET_GKS, APPLYSET_ID_LABEL, APPLYSET_NAMESPACES, APPLYSET_TOOLING, APPLYSET_TOOLING_VALUE)
    return {'apiVersion': 'v1', 'kind': 'Secret',
            'metadata': {'name': 'masto-set-config', 'namespace': 'social', 'resourceVersion': '3',
                         'labels': {APPLYSET_ID_LABEL: applyset_id('masto-set-config', 'social')},
                         'annotations': {APPLYSET_TOOLING: APPLYSET_TOOLING_VALUE, APPLYSET_GKS: gks,
                                         APPLYSET_NAMESPACES: ''}}}


def _member(kind, name, namespace=None):
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import APPLYSET_PART_OF
    out = obj(kind, name, uid='u-' + name, resourceVersion='2')
    out['metadata'].update(uid='u-' + name, resourceVersion='2',
                           labels={APPLYSET_PART_OF: applyset_id('masto-set-config', 'social')})
    if namespace:
        out['metadata']['namespace'] = namespace
    return out


def test_unlistable_cluster_scoped_kind_is_kept_with_a_warning():
    """The parent remembers a Namespace (an admin run with config_manage_namespace true); the namespaced token
    cannot list Namespaces: the run warns, prunes nothing cluster-scoped, and the parent keeps the kind."""
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import APPLYSET_GKS, Applier
    client = _FakeNamespacedClient(_applyset_parent('ConfigMap,Namespace'), [_member('ConfigMap', 'masto-env', 'social')])
    applier = Applier(client, namespace='social', apply_set='masto-set-config')
    result = applier.present([obj('ConfigMap', 'masto-env', data={'A': '1'})])
    assert result['pruned'] == []
    assert [w for w in applier.warnings if 'cannot list Namespace (HTTP 403' in w], applier.warnings
    assert client.parent['metadata']['annotations'][APPLYSET_GKS] == 'ConfigMap,Namespace'
    assert not [c for c in client.calls if c[0] == 'DELETE']


def test_a_namespaced_kind_forbidden_still_fails():
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier

    class Forbidden(_FakeNamespacedClient):
        def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
            if method == 'GET' and path.endswith('/configmaps'):
                return 403, {'kind': 'Status', 'code': 403, 'message': 'configmaps is forbidden'}
            return super(Forbidden, self).request(method, path, query, body, content_type, timeout)

    client = Forbidden(_applyset_parent('ConfigMap'), [])
    with pytest.raises(KubeError, match=r'listing ApplySet members \(ConfigMap in social\): HTTP 403: configmaps is forbidden'):
        Applier(client, namespace='social', apply_set='masto-set-config').present([obj('ConfigMap', 'masto-env')])


def test_a_namespace_is_never_pruned():
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier
    client = _FakeNamespacedClient(_applyset_parent('ConfigMap,Namespace'),
                                   [_member('Namespace', 'social'), _member('ConfigMap', 'masto-env', 'social'),
                                    _member('ConfigMap', 'old', 'social')], cluster_wide=True)
    applier = Applier(client, namespace='social', apply_set='masto-set-config')
    result = applier.present([obj('ConfigMap', 'masto-env', data={'A': '1'})])
    assert [(p['kind'], p['name']) for p in result['pruned']] == [('ConfigMap', 'old')]
    assert [c for c in client.calls if c[0] == 'DELETE'] == [('DELETE', '/api/v1/namespaces/social/configmaps/old')]
    assert [w for w in applier.warnings if 'Namespace social is no longer declared; it is kept' in w], applier.warnings
