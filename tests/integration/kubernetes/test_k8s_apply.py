"""fediops.mastodon.k8s_apply against a real kube-apiserver (tests/cluster): no mocks."""
import datetime
import json
import os
import subprocess
import time

from cluster.localcluster import LocalCluster


def kget(kube_cluster, *args):
    """kubectl get ... -o json as a dict, or None when not found."""
    res = kube_cluster.kubectl('get', *args, '-o', 'json', check=False)
    if res.returncode != 0:
        assert 'NotFound' in res.stderr, res.stderr
        return None
    return json.loads(res.stdout)


def cm(name, **data):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name}, 'data': data}


def secret(name, **data):
    return {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': name}, 'stringData': data}


def service(name):
    return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': name},
            'spec': {'selector': {'app': name}, 'ports': [{'port': 80, 'targetPort': 3000}]}}


def deployment(name, replicas=1, labels=None, image='ghcr.io/mastodon/mastodon:v4.3.0'):
    labels = labels or {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels},
                                  'spec': {'containers': [{'name': 'main', 'image': image}]}}}}


def job(name, fail=False, delay=None):
    annotations = {}
    if fail:
        annotations['sim.fediops.test/fail'] = 'true'
        annotations['sim.fediops.test/fail-message'] = 'PG::ConnectionBad: could not connect'
    if delay:
        annotations['sim.fediops.test/delay-seconds'] = str(delay)
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': name},
            'spec': {'backoffLimit': 0,
                     'template': {'metadata': {'annotations': annotations},
                                  'spec': {'restartPolicy': 'Never',
                                           'containers': [{'name': 'migrate', 'image': 'ghcr.io/mastodon/mastodon:v4.3.0',
                                                           'command': ['bundle', 'exec', 'rails', 'db:migrate']}]}}}}


def actions(result):
    return dict(('%s/%s' % (o['kind'], o['name']), o['action']) for o in result['objects'])


def test_lifecycle_create_noop_update_prune_absent(k8s_apply, kube_cluster, namespace):
    objs = [deployment('web', replicas=2), service('web'), cm('env', A='1'), secret('keys', K='v'), cm('extra', B='2')]
    # Given out of order on purpose: applied in dependency order.
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='web', wait=True, wait_timeout=60)
    assert not res.get('failed'), res
    assert res['changed'] is True
    assert [o['kind'] for o in res['objects']][:2] in (['Secret', 'ConfigMap'], ['ConfigMap', 'Secret'], ['ConfigMap', 'ConfigMap'])
    kinds = [o['kind'] for o in res['objects']]
    assert kinds.index('Service') > kinds.index('ConfigMap') and kinds.index('Deployment') > kinds.index('Service')
    assert set(actions(res).values()) == {'created'}
    assert res['applied'] == 5
    dep = kget(kube_cluster, '-n', namespace, 'deployment', 'web')
    assert dep['status']['readyReplicas'] == 2  # waited for the rollout
    assert 'managedFields' not in res['objects'][0]['object']

    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='web', wait=True)
    assert res['changed'] is False, res
    assert set(actions(res).values()) == {'unchanged'}

    objs[2] = cm('env', A='2')
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='web')
    assert res['changed'] is True
    assert actions(res)['ConfigMap/env'] == 'configured'
    assert actions(res)['ConfigMap/extra'] == 'unchanged'
    assert kget(kube_cluster, '-n', namespace, 'configmap', 'env')['data'] == {'A': '2'}

    # Prune: 'extra' and the Service are no longer declared.
    res = k8s_apply(definitions=objs[:1] + objs[2:4], namespace=namespace, apply_set='web')
    assert res['changed'] is True
    assert sorted((p['kind'], p['name']) for p in res['pruned']) == [('ConfigMap', 'extra'), ('Service', 'web')]
    assert kget(kube_cluster, '-n', namespace, 'configmap', 'extra') is None
    assert kget(kube_cluster, '-n', namespace, 'service', 'web') is None
    parent = kget(kube_cluster, '-n', namespace, 'secret', 'web')
    assert parent['metadata']['annotations']['applyset.kubernetes.io/contains-group-kinds'] == 'ConfigMap,Deployment.apps,Secret'

    res = k8s_apply(definitions=[], namespace=namespace, apply_set='web', state='absent')
    assert res['changed'] is True
    assert sorted(o['name'] for o in res['objects']) == ['env', 'keys', 'web']
    for kind, name in (('deployment', 'web'), ('configmap', 'env'), ('secret', 'keys'), ('secret', 'web')):
        assert kget(kube_cluster, '-n', namespace, kind, name) is None
    res = k8s_apply(definitions=[], namespace=namespace, apply_set='web', state='absent')
    assert res['changed'] is False


def test_multi_document_yaml_and_namespace_object(k8s_apply, kube_cluster, audit_log):
    ns = 'k8sapply-yaml'
    text = '''
apiVersion: v1
kind: ConfigMap
metadata: {name: from-yaml, namespace: %s}
data: {x: "1"}
---
apiVersion: v1
kind: Namespace
metadata: {name: %s}
''' % (ns, ns)
    try:
        res = k8s_apply(definitions=[text], apply_set='yaml', namespace=ns, check=True)
        assert not res.get('failed'), res
        assert res['changed'] is True and set(actions(res).values()) == {'created'}
        assert kget(kube_cluster, 'namespace', ns) is None
        res = k8s_apply(definitions=[text], apply_set='yaml', namespace=ns)
        assert not res.get('failed'), res
        assert [o['kind'] for o in res['objects']] == ['Namespace', 'ConfigMap']
        assert kget(kube_cluster, '-n', ns, 'configmap', 'from-yaml')['data'] == {'x': '1'}
        since = audit_log.mark()
        res = k8s_apply(definitions=[text], apply_set='yaml', namespace=ns)
        assert res['changed'] is False, res
        # The Namespace is no longer declared (config_manage_namespace: false): it stays, and namespaces are never
        # listed or deleted (a namespaced Role cannot list them; deleting one would delete the whole set).
        res = k8s_apply(definitions=[text.split('---', maxsplit=1)[0]], apply_set='yaml', namespace=ns)
        assert not res.get('failed'), res
        assert res['pruned'] == [] and kget(kube_cluster, 'namespace', ns) is not None
        assert any('namespaces it created are left in place' in w for w in res.get('warnings', [])), res
        parent = kget(kube_cluster, '-n', ns, 'secret', 'yaml')
        assert parent['metadata']['annotations']['applyset.kubernetes.io/contains-group-kinds'] == 'ConfigMap'
        touched = [(e['verb'], e['requestURI']) for e in audit_log.events(since)
                   if (e.get('objectRef') or {}).get('resource') == 'namespaces' and e['verb'] in ('list', 'delete')]
        assert touched == []
    finally:
        kube_cluster.kubectl('delete', 'namespace', ns, '--wait=false', check=False)


def test_check_mode_writes_nothing(k8s_apply, kube_cluster, namespace, audit_log):
    objs = [cm('env', A='1'), secret('keys', K='v'), deployment('web')]
    since = audit_log.mark()
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='web', check=True)
    assert res['changed'] is True
    assert set(actions(res).values()) == {'created'}
    for kind, name in (('configmap', 'env'), ('secret', 'keys'), ('deployment', 'web'), ('secret', 'web')):
        assert kget(kube_cluster, '-n', namespace, kind, name) is None
    writes = [e for e in audit_log.events(since) if e['verb'] not in ('get', 'list', 'watch')]
    assert writes and all('dryRun=All' in e['requestURI'] for e in writes), writes

    real = k8s_apply(definitions=objs, namespace=namespace, apply_set='web')
    assert real['changed'] is True
    before = kget(kube_cluster, '-n', namespace, 'configmap', 'env')

    # Same answer in check mode as in a real run: unchanged when nothing changes ...
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='web', check=True, diff=True)
    assert res['changed'] is False, res
    assert res['diff'] == []
    # ... and configured (with a diff) when something does, still writing nothing.
    changed = [cm('env', A='2'), objs[1], objs[2]]
    res = k8s_apply(definitions=changed, namespace=namespace, apply_set='web', check=True, diff=True)
    assert res['changed'] is True
    assert actions(res) == {'ConfigMap/env': 'configured', 'Secret/keys': 'unchanged', 'Deployment/web': 'unchanged'}
    assert kget(kube_cluster, '-n', namespace, 'configmap', 'env') == before
    # Prune in check mode: reported, not done.
    res = k8s_apply(definitions=objs[:1], namespace=namespace, apply_set='web', check=True)
    assert sorted(p['name'] for p in res['pruned']) == ['keys', 'web']
    assert kget(kube_cluster, '-n', namespace, 'secret', 'keys') is not None
    real = k8s_apply(definitions=changed, namespace=namespace, apply_set='web')
    assert actions(real) == actions(k8s_apply(definitions=objs, namespace=namespace, apply_set='web', check=True))


def test_diff_masks_secrets(k8s_apply, namespace):
    res = k8s_apply(definitions=[secret('keys', OTP_SECRET='s3cr3t-one', KEEP='same')], namespace=namespace, diff=True)
    assert res['changed'] is True
    res.pop('invocation', None)  # the module's input (mark such tasks no_log)
    text = json.dumps(res)
    assert 's3cr3t-one' not in text and 'c3NjcjN0LW9uZQ' not in text
    res = k8s_apply(definitions=[secret('keys', OTP_SECRET='s3cr3t-two', KEEP='same')], namespace=namespace, diff=True)
    res.pop('invocation', None)
    text = json.dumps(res)
    assert 's3cr3t' not in text and 'c2FtZQ' not in text  # base64 of "same"
    diff = res['diff'][0]
    assert diff['before']['data'] == {'OTP_SECRET': '******** (changed)', 'KEEP': '********'}
    assert diff['after']['data'] == {'OTP_SECRET': '******** (changed)', 'KEEP': '********'}
    assert res['objects'][0]['object']['data'] == {'OTP_SECRET': '********', 'KEEP': '********'}


def test_conflict_with_other_manager_and_force(k8s_apply, kube_cluster, namespace):
    manifest = json.dumps(cm('shared', MODE='theirs') | {'metadata': {'name': 'shared', 'namespace': namespace}})
    kube_cluster.kubectl('apply', '--server-side', '--field-manager=helm', '-f', '-', input=manifest)
    res = k8s_apply(definitions=[cm('shared', MODE='ours')], namespace=namespace)
    assert res.get('failed')
    assert 'ConfigMap %s/shared' % namespace in res['msg']
    assert '.data.MODE' in res['msg'] and '"helm"' in res['msg'], res['msg']
    assert 'force_conflicts' in res['msg']
    res = k8s_apply(definitions=[cm('shared', MODE='ours')], namespace=namespace, force_conflicts=True)
    assert not res.get('failed'), res
    assert res['changed'] is True
    assert kget(kube_cluster, '-n', namespace, 'configmap', 'shared')['data'] == {'MODE': 'ours'}


def test_immutable_selector_change_is_a_clear_error(k8s_apply, namespace):
    res = k8s_apply(definitions=[deployment('web')], namespace=namespace)
    assert res['changed'] is True
    res = k8s_apply(definitions=[deployment('web', labels={'app': 'web', 'tier': 'front'})], namespace=namespace)
    assert res.get('failed')
    assert 'Deployment %s/web is invalid' % namespace in res['msg']
    assert 'spec.selector' in res['msg'] and 'immutable' in res['msg'], res['msg']


def _ts(text):
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()


def test_failing_job_is_reported_fast(k8s_apply, kube_cluster, namespace):
    start = time.time()
    res = k8s_apply(definitions=[cm('env', A='1'), job('migrate', fail=True)], namespace=namespace,
                    wait=True, wait_timeout=120)
    end = time.time()
    assert res.get('failed')
    assert 'Job %s/migrate failed' % namespace in res['msg'], res['msg']
    assert 'PG::ConnectionBad: could not connect' in res['msg']
    assert 'exit code 1' in res['msg']
    # the pod simulator serves logs as a kubelet does (tests/cluster/kubesim/logs.go): this pod printed nothing
    assert 'log not available' in res['msg'] or 'Last log lines' in res['msg'] or '(its log is empty)' in res['msg']
    assert res['applied_objects'] == ['ConfigMap %s/env (created)' % namespace, 'Job %s/migrate (created)' % namespace]
    live = kget(kube_cluster, '-n', namespace, 'job', 'migrate')
    pods = kget(kube_cluster, '-n', namespace, 'pods', '-l', 'job-name=migrate')['items']
    finished = max(_ts(cs['state']['terminated']['finishedAt'])
                   for p in pods for cs in p['status']['containerStatuses'] if cs['state'].get('terminated'))
    failed_at = min(_ts(c['lastTransitionTime']) for c in live['status']['conditions']
                    if c['type'] in ('Failed', 'FailureTarget'))
    failure = min(finished, failed_at)
    # Timestamps have one-second resolution: allow for it.
    print('job failed at +%.1fs, module failed at +%.1fs: %.1fs later' % (failure - start, end - start, end - failure))
    assert end - failure <= 5 + 1, (failure - start, end - start)
    assert end - start < 30


def test_job_success_and_rollout_wait(k8s_apply, kube_cluster, namespace):
    res = k8s_apply(definitions=[job('migrate', delay=2), deployment('web', replicas=3)], namespace=namespace,
                    wait=True, wait_timeout=60)
    assert not res.get('failed'), res
    assert kget(kube_cluster, '-n', namespace, 'job', 'migrate')['status'].get('succeeded') == 1


def test_kubectl_recognises_the_applyset(k8s_apply, kube_cluster, namespace, tmp_path):
    objs = [cm('one', A='1'), cm('two', B='2'), service('web')]
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='web')
    set_id = res['apply_set']['id']
    listed = kube_cluster.kubectl('get', 'configmaps,services', '-n', namespace, '-l',
                                  'applyset.kubernetes.io/part-of=%s' % set_id, '-o', 'name').stdout.split()
    assert sorted(listed) == ['configmap/one', 'configmap/two', 'service/web']
    # kubectl itself, on our set: applying only "one" would prune "two" and the Service.
    manifest = tmp_path / 'one.json'
    manifest.write_text(json.dumps(dict(objs[0], metadata={'name': 'one', 'namespace': namespace})))
    env = dict(kube_cluster.env, KUBECTL_APPLYSET='true')
    out = subprocess.run(['kubectl', '--kubeconfig', kube_cluster.kubeconfig, 'apply', '-n', namespace, '--server-side',
                          '--field-manager=fediops.mastodon', '--prune', '--applyset=web', '--dry-run=server',
                          '-f', str(manifest)], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert 'configmap/two pruned' in out.stdout and 'service/web pruned' in out.stdout, out.stdout
    assert 'configmap/one' in out.stdout and 'configmap/one pruned' not in out.stdout


def test_noop_reapply_of_25_objects_one_write_each(k8s_apply, namespace, audit_log):
    objs = [cm('cm-%02d' % n, N=str(n)) for n in range(10)] + [secret('s-%02d' % n, N=str(n)) for n in range(5)] + \
           [service('svc-%02d' % n) for n in range(5)] + [deployment('dep-%02d' % n) for n in range(5)]
    assert len(objs) == 25
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='big', wait=True)
    assert res['changed'] is True and res['applied'] == 25
    since = audit_log.mark()
    res = k8s_apply(definitions=objs, namespace=namespace, apply_set='big', wait=True)
    until = audit_log.mark()
    assert res['changed'] is False, [o for o in res['objects'] if o['action'] != 'unchanged']
    events = audit_log.events(since, until)
    writes = [e for e in events if e['verb'] not in ('get', 'list', 'watch')]
    reads = [e for e in events if e['verb'] in ('get', 'list', 'watch')]
    print('no-op re-apply of 25 objects: %d requests, %d writes (%s), %d reads' % (
        len(events), len(writes), sorted(set(e['verb'] for e in writes)), len(reads)))
    assert len(writes) <= 25
    assert all(e['verb'] == 'patch' for e in writes)
    assert len(events) <= 25 + 12, [e['requestURI'] for e in reads]


def test_unreachable_api_server_is_named(k8s_apply, tmp_path, kube_cluster):
    import yaml
    cfg = yaml.safe_load(open(kube_cluster.kubeconfig, encoding='utf-8'))
    cfg['clusters'][0]['cluster']['server'] = 'https://127.0.0.1:1'
    path = tmp_path / 'kubeconfig'
    path.write_text(yaml.safe_dump(cfg))
    res = k8s_apply(definitions=[cm('x', A='1')], namespace='default', kubeconfig=str(path))
    assert res.get('failed')
    assert 'cannot reach the Kubernetes API server https://127.0.0.1:1' in res['msg'], res['msg']


def test_api_server_killed_mid_apply_converges(k8s_apply, tmp_path):
    """A dedicated cluster: kill kube-apiserver while the module waits, restart, re-run: nothing lost."""
    cluster = LocalCluster(tmp_path / 'cluster', verbose=False)
    kubeconfig = str(cluster.start())
    try:
        ns = 'killed'
        objs = [{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': ns}}] + \
               [cm('cm-%02d' % n, N=str(n)) for n in range(20)] + [deployment('web'), job('slow', delay=30)]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(1) as pool:
            # The wait retries an unreachable API server until its timeout (it may be restarting): keep it short.
            fut = pool.submit(k8s_apply, definitions=objs, namespace=ns, apply_set='set', wait=True, wait_timeout=15,
                              kubeconfig=kubeconfig)
            # Wait until the module has applied the Job (it then waits on it), then kill the API server.
            deadline = time.time() + 60
            while time.time() < deadline:
                out = subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'job', '-n', ns, 'slow'],
                                     capture_output=True, text=True, check=False)
                if out.returncode == 0:
                    break
                time.sleep(0.2)
            pid = cluster.processes()['kube-apiserver']['pid']
            os.killpg(pid, 9)
            res = fut.result(timeout=180)
        assert res.get('failed'), res
        assert 'cannot reach the Kubernetes API server' in res['msg'] and cluster.api_url.split('//')[1] in res['msg'], res['msg']
        # The Job is still running; the Deployment may be too, when the kill came before its pod was ready (a loaded
        # machine): either way the wait names what it was waiting for and why it could not look.
        assert res['msg'].startswith('timed out after 15s waiting for: '), res['msg']
        assert 'Job killed/slow: running; retrying after: ' in res['msg'], res['msg']
        assert len(res['applied_objects']) == 23 and 'Job killed/slow (created)' in res['applied_objects']
        # Restart (a fresh control plane) and re-run: everything is there again.
        cluster.stop()
        kubeconfig = str(cluster.start())
        objs[-1] = job('slow', delay=1)
        res = k8s_apply(definitions=objs, namespace=ns, apply_set='set', wait=True, wait_timeout=60, kubeconfig=kubeconfig)
        assert not res.get('failed'), res
        names = subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'configmaps,deployments,jobs', '-n', ns,
                                '-l', 'applyset.kubernetes.io/part-of=' + res['apply_set']['id'], '-o', 'name'],
                               capture_output=True, text=True, check=True).stdout.split()
        assert len(names) == 22
        res = k8s_apply(definitions=objs, namespace=ns, apply_set='set', kubeconfig=kubeconfig)
        assert res['changed'] is False
    finally:
        cluster.stop()


def test_kubectl_refuses_a_set_named_after_other_tooling(k8s_apply, kube_cluster, namespace, tmp_path):
    """Why the parents say applyset.kubernetes.io/tooling: kubectl/<version> and not fediops.mastodon/<version>:
    kubectl (1.32, 1.34) refuses to prune a set whose tooling is not kubectl, so the operator's own
    `kubectl apply --prune --applyset=...` would stop working on our sets."""
    k8s_apply(definitions=[cm('one', A='1')], namespace=namespace, apply_set='web')
    kube_cluster.kubectl('-n', namespace, 'annotate', 'secret', 'web', '--overwrite',
                         'applyset.kubernetes.io/tooling=fediops.mastodon/0.3.0')
    manifest = tmp_path / 'one.json'
    manifest.write_text(json.dumps(dict(cm('one', A='1'), metadata={'name': 'one', 'namespace': namespace})))
    out = subprocess.run(['kubectl', '--kubeconfig', kube_cluster.kubeconfig, 'apply', '-n', namespace, '--server-side',
                          '--field-manager=fediops.mastodon', '--prune', '--applyset=web', '--dry-run=server',
                          '-f', str(manifest)], env=dict(kube_cluster.env, KUBECTL_APPLYSET='true'),
                         capture_output=True, text=True, check=False)
    assert out.returncode != 0 and 'is managed by tooling "fediops.mastodon" instead of "kubectl"' in out.stderr, \
        out.stdout + out.stderr
