"""The built manifests against a real kube-apiserver (tests/cluster): valid, and their pods pass the Pod Security
`restricted` level.

Pod Security admission (built into kube-apiserver, enabled by default) ENFORCES on Pod objects only; for
Deployments and Jobs it only warns. So every workload is sent with a server-side dry-run (API validation of all
objects), and a Pod made of each workload's pod template is dry-run created in a namespace labelled
`pod-security.kubernetes.io/enforce=restricted`: the API server itself judges each pod. A deliberately
non-compliant variant must be rejected by the same check, so the test can fail.
"""
import copy
import os
import sys
import uuid

import pytest

# The suite runs in a collection copy .../ansible_collections/fediops/mastodon: import its module_utils directly.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(_ROOT)))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import build  # noqa: E402
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import (  # noqa: E402
    make_model, use_migrations_stand_in)

PSS_LABELS = {'pod-security.kubernetes.io/enforce': 'restricted',
              'pod-security.kubernetes.io/enforce-version': 'latest',
              'pod-security.kubernetes.io/warn': 'restricted'}


@pytest.fixture
def restricted_namespace(kube_cluster):
    name = 'pss-' + uuid.uuid4().hex[:8]
    kube_cluster.kubectl('create', 'namespace', name)
    kube_cluster.kubectl('label', 'namespace', name, *['%s=%s' % item for item in PSS_LABELS.items()])
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--wait=false', check=False)


@pytest.fixture
def new_namespace(kube_cluster):
    """A namespace name for the builder's own Namespace object; deleted afterwards."""
    name = 'pss-' + uuid.uuid4().hex[:8]
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--wait=false', check=False)


def pods_of(result):
    """A Pod for each Deployment and Job, made of its pod template (as the controllers would make it)."""
    for objects in result.values():
        for obj in objects:
            if obj['kind'] in ('Deployment', 'Job'):
                template = copy.deepcopy(obj['spec']['template'])
                meta = dict(template.get('metadata') or {}, name=obj['metadata']['name'] + '-pod',
                            namespace=obj['metadata']['namespace'])
                yield obj, {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': meta, 'spec': template['spec']}


def dry_run_pod(client, pod):
    path = client.path('v1', 'Pod', pod['metadata']['namespace'])
    return client.request('POST', path, {'dryRun': 'All', 'fieldManager': 'fediops-test'}, body=pod)


def test_manifests_pass_restricted_pod_security(kube_cluster, new_namespace, monkeypatch):
    """The builder's own Namespace enforces `restricted` (config_namespace_pod_security's default) and every pod
    of every component is admitted there."""
    use_migrations_stand_in(monkeypatch)
    restricted_namespace = new_namespace
    model = make_model(namespace=restricted_namespace, config_network_policy=True,
                       config_media_volume_claim='uploads', web_hpa_enabled=True)
    model['redis_ca_pem'] = model['ca_pem']
    # An image pinned by digest: the Job names and labels must still be valid for the API server.
    digest = 'sha256:' + 'ab' * 32
    model['version'] = 'v4.6.5@' + digest
    model['image'] = 'ghcr.io/mastodon/mastodon@' + digest
    result = build(model)
    client = KubeClient(kubeconfig=kube_cluster.kubeconfig)
    # The config objects for real (the pods' ServiceAccount must exist for pod admission), the rest dry-run.
    Applier(client, namespace=restricted_namespace).present(result['config'])
    rest = [obj for component, objects in result.items() if component != 'config' for obj in objects]
    checked = Applier(client, namespace=restricted_namespace, check_mode=True).present(rest)
    assert sorted(o['kind'] for o in checked['objects']) == [
        'Deployment', 'Deployment', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'Ingress', 'Job', 'Job',
        'PodDisruptionBudget', 'PodDisruptionBudget', 'Service', 'Service']
    admitted = []
    for obj, pod in pods_of(result):
        status, body = dry_run_pod(client, pod)
        assert status == 201, (obj['metadata']['name'], status, body)
        assert body['spec']['automountServiceAccountToken'] is False
        assert not [v for v in body['spec']['volumes'] if 'projected' in v], 'a service account token is mounted'
        admitted.append(obj['metadata']['name'])
    assert len(admitted) == 5 and all(len(name) <= 63 for name in admitted)
    assert sorted(admitted)[2:] == ['masto-sidekiq-all', 'masto-streaming', 'masto-web']
    assert sorted(admitted)[0].startswith('masto-migrate-post-v4-6-5-sha256-')
    enforced = kube_cluster.kubectl('get', 'namespace', restricted_namespace, '-o',
                                    'jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}').stdout
    assert enforced == 'restricted'
    sa = kube_cluster.kubectl('get', 'serviceaccount', 'masto', '-n', restricted_namespace,
                              '-o', 'jsonpath={.automountServiceAccountToken}').stdout
    assert sa == 'false'


@pytest.mark.parametrize('breach, reason', [
    (lambda spec: spec['containers'][0]['securityContext'].update(allowPrivilegeEscalation=True),
     'allowPrivilegeEscalation != false'),
    (lambda spec: spec['containers'][0]['securityContext'].pop('capabilities'), 'unrestricted capabilities'),
    (lambda spec: [spec['securityContext'].pop('runAsNonRoot'), spec['containers'][0]['securityContext'].pop('runAsNonRoot')],
     'runAsNonRoot != true'),
    (lambda spec: [spec['securityContext'].pop('seccompProfile'), spec['containers'][0]['securityContext'].pop('seccompProfile')],
     'seccompProfile'),
    (lambda spec: spec['volumes'].append({'name': 'host', 'hostPath': {'path': '/opt/mastodon'}}), 'restricted volume type "hostPath"'),
], ids=['privilege-escalation', 'capabilities', 'root', 'seccomp', 'host-path'])
def test_a_non_compliant_pod_is_rejected(kube_cluster, restricted_namespace, monkeypatch, breach, reason):
    """The check above can fail: the same dry-run refuses a web pod with one restricted rule broken."""
    use_migrations_stand_in(monkeypatch)
    result = build(make_model(namespace=restricted_namespace, config_manage_namespace=False), components=('config', 'web'))
    client = KubeClient(kubeconfig=kube_cluster.kubeconfig)
    Applier(client, namespace=restricted_namespace).present(result['config'])
    dummy, pod = next(pods_of(result))
    breach(pod['spec'])
    status, body = dry_run_pod(client, pod)
    assert status == 403, (status, body)
    assert 'violates PodSecurity "restricted:latest"' in body['message'] and reason in body['message'], body['message']
