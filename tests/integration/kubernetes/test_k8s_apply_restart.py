"""k8s_apply's wait survives a kube-apiserver restart (issue 17, item 2), on a cluster of the test's own.

After a restart the API server's watch cache starts at etcd's current revision, so a watch from the
resourceVersion the apply returned gets 410 Gone ("Expired: too old resource version"; k8s.io/apiserver
v0.34.4 pkg/storage/cacher/watch_cache.go, errors.NewResourceExpired); while it is down, connections are
refused and open watches drop. The wait must re-list and re-watch until the Deployment is ready.
"""
import subprocess
import threading
import time

from cluster.localcluster import LocalCluster

PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: apply
      fediops.mastodon.k8s_apply:
        kubeconfig: "{{ p.kubeconfig }}"
        definitions: "{{ p.definitions }}"
        namespace: "{{ p.namespace }}"
        apply_set: "{{ p.apply_set }}"
        wait: true
        wait_timeout: "{{ p.wait_timeout }}"
      register: out
      ignore_errors: true
'''

# kubesim keeps the pods of this Deployment Pending for that many seconds (tests/cluster/README.md, kubesim).
READY_AFTER_SECONDS = 25


def slow_deployment(name):
    labels = {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
            'spec': {'replicas': 1, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels,
                                               'annotations': {'sim.fediops.test/delay-seconds': str(READY_AFTER_SECONDS)}},
                                  'spec': {'containers': [{'name': 'main', 'image': 'ghcr.io/mastodon/mastodon:v4.3.0'}]}}}}


def test_wait_survives_an_api_server_restart(run_playbook, tmp_path):
    cluster = LocalCluster(tmp_path / 'cluster', verbose=False)
    kubeconfig = str(cluster.start())
    try:
        subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'create', 'namespace', 'restart'], check=True,
                       capture_output=True)
        outcome = {}

        def deploy():
            outcome['res'] = run_playbook(PLAYBOOK, extra_vars={'p': {
                'kubeconfig': kubeconfig, 'namespace': 'restart', 'apply_set': 'web', 'wait_timeout': 150,
                'definitions': [slow_deployment('web')]}})

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
        cluster.restart_apiserver(down_seconds=3)
        # The wait spans the restart: the module was waiting before it and still is after it.
        if not worker.is_alive():
            result = outcome['res'].result('apply') if outcome['res'].data else outcome['res'].stderr
            raise AssertionError('the module ended during the restart: %s' % (result.get('msg') or result))
        worker.join(timeout=240)
        assert not worker.is_alive()
        res = outcome['res']
        assert res.data is not None, res.stdout + res.stderr
        result = res.result('apply')
        assert not result.get('failed'), result.get('msg')
        assert result['changed'] is True
        ready = subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'deployment', '-n', 'restart', 'web',
                                '-o', 'jsonpath={.status.readyReplicas}'], capture_output=True, text=True, check=True)
        assert ready.stdout == '1'
    finally:
        cluster.stop()
