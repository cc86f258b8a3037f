"""A component's apply waits before it prunes (plugins/module_utils/_deploy/applier.py ComponentApplier.apply): a
failed pre-deployment migration Job of the new version leaves the previous version's Job in place, and the next
successful run prunes it. Against the local cluster (kubesim fails a pod whose template says so)."""
import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.applier import ComponentApplier
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import ApplyError
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient


def _job(name, fail=False):
    annotations = {'sim.fediops.test/fail': 'true', 'sim.fediops.test/fail-message': 'PG::UndefinedTable'} if fail else {}
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': name, 'labels': {'app.kubernetes.io/instance': 'm'}},
            'spec': {'backoffLimit': 0, 'template': {
                'metadata': {'annotations': annotations},
                'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'migrate', 'image': 'ghcr.io/mastodon/mastodon:v4.5.3',
                                                                   'command': ['bundle', 'exec', 'rails', 'db:migrate']}]}}}}


def _run(client, namespace, objects):
    component = ComponentApplier(client, 'migrate-pre', namespace, 'm-set-migrate-pre', {}, wait=True, wait_timeout=60)
    component.plan(objects)
    return component.apply()


def _jobs(client, namespace):
    status, body = client.request('GET', client.path('batch/v1', 'Job', namespace))
    assert status == 200
    return sorted(item['metadata']['name'] for item in body['items'])


def test_a_failed_new_job_leaves_the_previous_one(kube_cluster, namespace):
    client = KubeClient(kubeconfig=str(kube_cluster.kubeconfig))
    _run(client, namespace, [_job('m-migrate-pre-v4-5-2')])
    assert _jobs(client, namespace) == ['m-migrate-pre-v4-5-2']
    with pytest.raises((ApplyError, PlanError)) as failed:
        _run(client, namespace, [_job('m-migrate-pre-v4-5-3', fail=True)])
    assert 'PG::UndefinedTable' in str(failed.value)
    assert _jobs(client, namespace) == ['m-migrate-pre-v4-5-2', 'm-migrate-pre-v4-5-3']  # the previous one is kept
    result = _run(client, namespace, [_job('m-migrate-pre-v4-5-4')])
    assert [p['name'] for p in result['pruned']] == ['m-migrate-pre-v4-5-2', 'm-migrate-pre-v4-5-3'] or \
        sorted(p['name'] for p in result['pruned']) == ['m-migrate-pre-v4-5-2', 'm-migrate-pre-v4-5-3']
    assert _jobs(client, namespace) == ['m-migrate-pre-v4-5-4']
