"""k8s_apply's wait survives a kube-apiserver restart on the same etcd (issue 17, finding 2).

A restarted API server drops every watch connection, refuses connections while it starts, and its new watch
cache begins at etcd's current revision: a watch from an older resourceVersion is answered with HTTP 410
``Expired: too old resource version`` (k8s.io/apiserver pkg/storage/cacher: watchCache.getAllEventsSinceLocked,
errors.NewResourceExpired). The wait must LIST again and watch from the fresh resourceVersion, within its timeout.
The pods are held not-ready by kubesim's ``sim.fediops.test/delay-seconds`` annotation (tests/cluster/README.md,
tests/cluster/kubesim/main.go), so the Deployment is still pending when the API server goes away.
"""
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

HOLD_SECONDS = 25  # pods stay not-ready this long: the restart happens while the wait is pending


def held_deployment(name, seconds):
    labels = {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
            'spec': {'replicas': 2, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels,
                                               'annotations': {'sim.fediops.test/delay-seconds': str(seconds)}},
                                  'spec': {'containers': [{'name': 'web', 'image': 'ghcr.io/mastodon/mastodon:v4.5.0'}]}}}}


def _watch_requests(audit_log, since, namespace):
    """The module's watches of Deployments in the namespace, as logged when they START."""
    return [e for e in audit_log.events(since, stage='ResponseStarted') if e['verb'] == 'watch'
            and (e.get('objectRef') or {}).get('resource') == 'deployments'
            and (e.get('objectRef') or {}).get('namespace') == namespace]


def test_wait_survives_api_server_restart(k8s_apply, kube_cluster, namespace, audit_log):
    cluster = kube_cluster.cluster
    if cluster is None:
        pytest.fail('this test restarts the API server: it needs a cluster started by tests/cluster (not a reused foreign one)')
    since = audit_log.mark()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        fut = pool.submit(k8s_apply, definitions=[held_deployment('web', HOLD_SECONDS)], namespace=namespace,
                          wait=True, wait_timeout=180)
        # Restart once the module is watching the Deployment.
        deadline = time.monotonic() + 90
        while not _watch_requests(audit_log, since, namespace):
            assert time.monotonic() < deadline, 'k8s_apply never started watching'
            assert not fut.done(), fut.result()
            time.sleep(0.5)
        dep = json.loads(kube_cluster.kubectl('get', '-n', namespace, 'deployment', 'web', '-o', 'json').stdout)
        assert dep['status'].get('readyReplicas', 0) == 0, 'the Deployment became ready before the restart'
        restarted_at = time.monotonic()
        downtime = cluster.restart_apiserver(down=2)
        res = fut.result(timeout=240)
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    dep = json.loads(kube_cluster.kubectl('get', '-n', namespace, 'deployment', 'web', '-o', 'json').stdout)
    assert dep['status']['readyReplicas'] == 2
    watches = _watch_requests(audit_log, since, namespace)
    assert len(watches) >= 2, 'no second watch after the restart: %s' % watches
    print('restart after %.1fs of waiting; API server down %.1fs; wait done after %.1fs; %d watches'
          % (restarted_at - started, downtime, time.monotonic() - started, len(watches)))


def test_cli_restart_apiserver_keeps_the_data(kube_cluster, namespace):
    """`localcluster.py restart-apiserver` restarts kube-apiserver on the same etcd: objects survive, unlike `restart`."""
    if kube_cluster.cluster is None:
        pytest.fail('this test restarts the API server: it needs a cluster started by tests/cluster')
    kube_cluster.kubectl('create', 'configmap', 'kept', '-n', namespace, '--from-literal=a=1')
    before = kube_cluster.cluster.processes()['kube-apiserver']['pid']
    etcd_before = kube_cluster.cluster.processes()['etcd']['pid']
    import sys
    from cluster import localcluster
    out = subprocess.run([sys.executable, localcluster.__file__, 'restart-apiserver',
                          '--state-dir', str(kube_cluster.cluster.state_dir)],
                         capture_output=True, text=True, check=False, timeout=180)
    assert out.returncode == 0, out.stderr
    assert 'restarted on the same etcd' in out.stderr
    assert kube_cluster.cluster.processes()['kube-apiserver']['pid'] != before
    assert kube_cluster.cluster.processes()['etcd']['pid'] == etcd_before
    assert kube_cluster.cluster.healthy()
    got = json.loads(kube_cluster.kubectl('get', 'configmap', 'kept', '-n', namespace, '-o', 'json').stdout)
    assert got['data'] == {'a': '1'}
