"""k8s_apply's wait survives a kube-apiserver restart (issue 17, item 2), on a cluster of the test's own.

After a restart the API server's watch cache starts at etcd's current revision, so a watch from the
resourceVersion the apply returned gets 410 Gone ("Expired: too old resource version"; k8s.io/apiserver
v0.34.4 pkg/storage/cacher/watch_cache.go, errors.NewResourceExpired); while it is down, connections are
refused and open watches drop. The wait must re-list and re-watch until the Deployment is ready.

Against the old wait (watch from the last resourceVersion, any error is a failure) this test failed with:
"the module ended during the restart: Deployment restart/web: cannot reach the Kubernetes API server
https://127.0.0.1:48153: Response ended prematurely".
"""
import os
import subprocess
import sys
import threading
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(_ROOT)))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

from cluster.localcluster import LocalCluster  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError  # noqa: E402

# kubesim keeps the pods of this Deployment Pending for that many seconds (tests/cluster/README.md, kubesim).
READY_AFTER_SECONDS = 25


def slow_deployment(name):
    labels = {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
            'spec': {'replicas': 1, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels,
                                               'annotations': {'sim.fediops.test/delay-seconds': str(READY_AFTER_SECONDS)}},
                                  'spec': {'containers': [{'name': 'main', 'image': 'ghcr.io/mastodon/mastodon:v4.3.0'}]}}}}


def test_wait_survives_an_api_server_restart(k8s_apply_to, tmp_path):
    cluster = LocalCluster(tmp_path / 'cluster', verbose=False)
    kubeconfig = str(cluster.start())
    try:
        subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'create', 'namespace', 'restart'], check=True,
                       capture_output=True)
        outcome = {}

        def deploy():
            outcome['result'] = k8s_apply_to(kubeconfig, namespace='restart', apply_set='web', wait=True,
                                             wait_timeout=150, definitions=[slow_deployment('web')])

        worker = threading.Thread(target=deploy)
        worker.start()
        # Once the Deployment exists the module is waiting on it: restart the API server on the same etcd.
        deadline = time.time() + 60
        while time.time() < deadline:
            if subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'deployment', '-n', 'restart', 'web'],
                              capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError('the Deployment was never created')
        time.sleep(2)
        assert worker.is_alive(), 'the module ended before the restart'
        client = KubeClient(kubeconfig=kubeconfig)
        path = client.path('apps/v1', 'Deployment', 'restart')
        status, stale = client.request('GET', path + '/web')
        assert status == 200
        cluster.restart_apiserver(down_seconds=3)
        # The wait spans the restart: the module was waiting before it and still is after it.
        if not worker.is_alive():
            worker.join()
            raise AssertionError('the module ended during the restart: %s' % outcome.get('result', {}).get('msg'))
        worker.join(timeout=240)
        assert not worker.is_alive()
        result = outcome['result']
        assert not result.get('failed'), result.get('msg')
        assert result['changed'] is True
        ready = subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'deployment', '-n', 'restart', 'web',
                                '-o', 'jsonpath={.status.readyReplicas}'], capture_output=True, text=True, check=True)
        assert ready.stdout == '1'

        # After the restart, a watch from the resourceVersion read before it is answered with 410 Gone when the
        # new watch cache serves it (when the cache is still initialising, etcd serves it): either way a wait that
        # starts from that stale object ends.
        client = KubeClient(kubeconfig=kubeconfig)
        try:
            for dummy in client.watch(path, {'fieldSelector': 'metadata.name=web',
                                             'resourceVersion': stale['metadata']['resourceVersion']}, timeout=3):
                pass
            print('stale watch: served')
        except KubeError as exc:
            assert exc.status == 410 and 'too old resource version' in exc.msg, exc.msg
            print('stale watch: %s' % exc.msg)
        declared = slow_deployment('web')
        declared['metadata']['namespace'] = 'restart'
        Applier(client, namespace='restart', wait=True, wait_timeout=30).wait_for([(declared, stale)])
    finally:
        cluster.stop()
