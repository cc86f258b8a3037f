"""k8s_apply replace_failed_jobs against the real local cluster: a failed Job does not block a retry."""
import json
import time

from test_k8s_apply import job, kget


def _job(name, fail):
    obj = job(name, fail=fail, delay=1)
    obj['spec']['template']['metadata']['labels'] = {'app': 'migrate'}
    return obj


def test_failed_job_is_replaced_on_reapply(k8s_apply, kube_cluster, namespace):
    res = k8s_apply(definitions=[_job('migrate', fail=True)], namespace=namespace, apply_set='migrate', wait=True,
                    wait_timeout=60)
    assert res.get('failed'), res
    assert 'Job %s/migrate failed' % namespace in res['msg'], res['msg']
    failed = kget(kube_cluster, '-n', namespace, 'job', 'migrate')
    old_uid = failed['metadata']['uid']

    # Check mode: reported as would-be replaced, nothing changes.
    res = k8s_apply(check=True, definitions=[_job('migrate', fail=False)], namespace=namespace, apply_set='migrate',
                    wait=True, wait_timeout=60)
    assert not res.get('failed'), res
    assert res['changed'] is True
    assert [(o['name'], o['action']) for o in res['objects']] == [('migrate', 'replaced')]
    assert kget(kube_cluster, '-n', namespace, 'job', 'migrate')['metadata']['uid'] == old_uid

    # Without replace_failed_jobs the failed Job stays and the re-run fails again at once.
    res = k8s_apply(definitions=[_job('migrate', fail=True)], namespace=namespace, apply_set='migrate', wait=True,
                    wait_timeout=60, replace_failed_jobs=False)
    assert res.get('failed') and 'Job %s/migrate failed' % namespace in res['msg'], res
    assert kget(kube_cluster, '-n', namespace, 'job', 'migrate')['metadata']['uid'] == old_uid

    # The failure is fixed (annotation removed): the re-run deletes the failed Job and its pod and creates it anew.
    res = k8s_apply(definitions=[_job('migrate', fail=False)], namespace=namespace, apply_set='migrate', wait=True,
                    wait_timeout=60)
    assert not res.get('failed'), res
    assert res['changed'] is True
    assert [(o['name'], o['action']) for o in res['objects']] == [('migrate', 'replaced')]
    live = kget(kube_cluster, '-n', namespace, 'job', 'migrate')
    assert live['metadata']['uid'] != old_uid
    assert live['status'].get('succeeded') == 1, live['status']
    assert 'sim.fediops.test/fail' not in (live['spec']['template']['metadata'].get('annotations') or {})
    # The old Job's pods go with it (Background propagation); only the new Job's pod remains.
    pods = json.loads(kube_cluster.kubectl('get', 'pods', '-n', namespace, '-l', 'app=migrate', '-o', 'json').stdout)
    owners = set()
    for dummy in range(50):  # the garbage collector deletes them in the background
        owners = set(p['metadata']['labels'].get('batch.kubernetes.io/controller-uid') for p in pods['items'])
        if old_uid not in owners:
            break
        time.sleep(0.2)
        pods = json.loads(kube_cluster.kubectl('get', 'pods', '-n', namespace, '-l', 'app=migrate', '-o', 'json').stdout)
    assert owners == {live['metadata']['uid']}, owners

    # A completed Job is not replaced: the next run is a no-op.
    res = k8s_apply(definitions=[_job('migrate', fail=False)], namespace=namespace, apply_set='migrate', wait=True,
                    wait_timeout=60)
    assert not res.get('failed') and res['changed'] is False, res
    assert kget(kube_cluster, '-n', namespace, 'job', 'migrate')['metadata']['uid'] == live['metadata']['uid']


def test_failed_job_without_apply_set_is_replaced(k8s_apply, kube_cluster, namespace):
    res = k8s_apply(definitions=[_job('once', fail=True)], namespace=namespace, wait=True, wait_timeout=60)
    assert res.get('failed'), res
    res = k8s_apply(definitions=[_job('once', fail=False)], namespace=namespace, wait=True, wait_timeout=60)
    assert not res.get('failed'), res
    assert res['objects'][0]['action'] == 'replaced'
    assert kget(kube_cluster, '-n', namespace, 'job', 'once')['status'].get('succeeded') == 1
