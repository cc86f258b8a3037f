"""The deploy with a ServiceAccount token bound only to the namespaced Role of docs/rbac/deployer.yml (issue 17,
finding 4), on a local cluster with RBAC authorization on (tests/cluster: --authorization Node,RBAC).

The objects are the deploy's, shaped as roles/*/templates/*.j2 render them (config: env ConfigMap and
Secret, kept secrets, direct database Secret, CA Secret, ServiceAccount; migrations: the pre-deployment Job; web:
Deployment, Service, HPA, PDB, Ingress, NetworkPolicy; streaming: Deployment, Service, PDB, Ingress; sidekiq: one
Deployment per group), each component in its ApplySet ``<name>-set-<component>`` (docs/dev/ARCHITECTURE.md section 6),
without the Namespace (``config_manage_namespace: false``, section 7). Authorization is the real API server's
RBAC authorizer; the verdicts are read from its audit log.
"""
import base64
import json
import secrets
import subprocess

import pytest
import yaml

from cluster.localcluster import LocalCluster

from integration.kubernetes.conftest import AuditLog

NAME = 'mastodon'
NAMESPACE = 'mastodon'
SERVICE_ACCOUNT = 'system:serviceaccount:%s:mastodon-deployer' % NAMESPACE
DEPLOYER_YML = 'docs/rbac/deployer.yml'

PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: read the kept secrets
      fediops.mastodon.k8s_secret_info:
        kubeconfig: "{{ kubeconfig }}"
        namespace: "%(ns)s"
        name: "%(name)s-generated-secrets"
      register: kept
    - name: apply
      fediops.mastodon.k8s_apply:
        kubeconfig: "{{ kubeconfig }}"
        namespace: "%(ns)s"
        apply_set: "%(name)s-set-{{ item.component }}"
        definitions: "{{ item.objects }}"
        wait: true
        wait_timeout: 120
      loop: "{{ components }}"
      loop_control:
        label: "{{ item.component }}"
      register: applied
    - name: read the kept secrets again
      fediops.mastodon.k8s_secret_info:
        kubeconfig: "{{ kubeconfig }}"
        namespace: "%(ns)s"
        name: "%(name)s-generated-secrets"
      register: kept_after
''' % {'ns': NAMESPACE, 'name': NAME}


def _labels(component):
    return {'app.kubernetes.io/name': 'mastodon', 'app.kubernetes.io/instance': NAME,
            'app.kubernetes.io/component': component, 'app.kubernetes.io/managed-by': 'fediops.mastodon'}


def _meta(name, component):
    return {'name': name, 'labels': _labels(component)}


def _secret(name, component, data):
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque', 'metadata': _meta(name, component),
            'data': dict((k, base64.b64encode(v.encode()).decode()) for k, v in data.items())}


def _pod_spec(component, command, restart='Always'):
    return {'restartPolicy': restart, 'serviceAccountName': NAME, 'automountServiceAccountToken': False,
            'securityContext': {'runAsNonRoot': True, 'runAsUser': 991, 'fsGroup': 991},
            'volumes': [{'name': 'db-ca', 'secret': {'secretName': NAME + '-db-ca'}}],
            'containers': [{'name': component, 'image': 'ghcr.io/mastodon/mastodon:v4.5.15', 'command': command,
                            'envFrom': [{'configMapRef': {'name': NAME + '-env'}}, {'secretRef': {'name': NAME + '-env'}}],
                            'volumeMounts': [{'name': 'db-ca', 'mountPath': '/etc/mastodon/ca', 'readOnly': True}]}]}


def _deployment(name, component, command, replicas=1):
    selector = {'app.kubernetes.io/instance': NAME, 'app.kubernetes.io/component': component}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': _meta(name, component),
            'spec': {'replicas': replicas, 'selector': {'matchLabels': selector},
                     'template': {'metadata': {'labels': dict(_labels(component), **selector)},
                                  'spec': _pod_spec(component, command)}}}


def _service(name, component, port):
    return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': _meta(name, component),
            'spec': {'type': 'ClusterIP', 'selector': {'app.kubernetes.io/instance': NAME, 'app.kubernetes.io/component': component},
                     'ports': [{'name': 'http', 'port': port, 'targetPort': port, 'protocol': 'TCP'}]}}


def _pdb(name, component):
    return {'apiVersion': 'policy/v1', 'kind': 'PodDisruptionBudget', 'metadata': _meta(name, component),
            'spec': {'minAvailable': 1, 'selector': {'matchLabels': {'app.kubernetes.io/instance': NAME,
                                                                     'app.kubernetes.io/component': component}}}}


def _ingress(name, component, host, path, port):
    return {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'metadata': _meta(name, component),
            'spec': {'ingressClassName': 'nginx', 'rules': [{'host': host, 'http': {'paths': [
                {'path': path, 'pathType': 'Prefix',
                 'backend': {'service': {'name': name, 'port': {'number': port}}}}]}}]}}


def deploy_objects(kept, sidekiq_groups=('default', 'pull'), hpa=True):
    """{component: [objects]} of one deploy (no Namespace)."""
    web, streaming = NAME + '-web', NAME + '-streaming'
    config = [
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': _meta(NAME, 'config'), 'automountServiceAccountToken': False},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': _meta(NAME + '-env', 'config'),
         'data': {'LOCAL_DOMAIN': 'social.example', 'DB_HOST': 'db.example', 'DB_PORT': '25060', 'REDIS_DRIVER': 'ruby'}},
        _secret(NAME + '-env', 'config', {'DB_PASS': 'test-db-password', 'REDIS_URL': 'rediss://default:test-redis@redis.example:25061'}),
        _secret(NAME + '-generated-secrets', 'config', kept),
        _secret(NAME + '-db-direct', 'config', {'DB_HOST': 'db.example', 'DB_PORT': '25060', 'DB_USER': 'doadmin',
                                                'DB_PASS': 'test-db-password', 'DB_NAME': 'mastodon', 'PREPARED_STATEMENTS': 'true'}),
        _secret(NAME + '-db-ca', 'config', {'ca.crt': '-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n'}),
    ]
    job = {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': _meta(NAME + '-migrate-pre-v4-5-15', 'migrations-pre'),
           'spec': {'backoffLimit': 0, 'activeDeadlineSeconds': 3600,
                    'template': {'metadata': {'labels': _labels('migrations-pre')},
                                 'spec': _pod_spec('migrate', ['bundle', 'exec', 'rails', 'db:migrate'], restart='Never')}}}
    web_objs = [_deployment(web, 'web', ['bundle', 'exec', 'puma', '-C', 'config/puma.rb'], replicas=2),
                _service(web, 'web', 3000), _pdb(web, 'web'),
                _ingress(web, 'web', 'social.example', '/', 3000),
                {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': _meta(web, 'web'),
                 'spec': {'podSelector': {'matchLabels': {'app.kubernetes.io/instance': NAME, 'app.kubernetes.io/component': 'web'}},
                          'policyTypes': ['Ingress'], 'ingress': [{'ports': [{'port': 3000, 'protocol': 'TCP'}]}]}}]
    if hpa:
        web_objs.append({'apiVersion': 'autoscaling/v2', 'kind': 'HorizontalPodAutoscaler', 'metadata': _meta(web, 'web'),
                         'spec': {'scaleTargetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': web},
                                  'minReplicas': 2, 'maxReplicas': 6,
                                  'metrics': [{'type': 'Resource', 'resource': {'name': 'cpu', 'target': {
                                      'type': 'Utilization', 'averageUtilization': 75}}}]}})
    streaming_objs = [_deployment(streaming, 'streaming', ['node', './streaming']), _service(streaming, 'streaming', 4000),
                      _pdb(streaming, 'streaming'),
                      _ingress(streaming, 'streaming', 'streaming.social.example', '/api/v1/streaming', 4000)]
    sidekiq = [_deployment('%s-sidekiq-%s' % (NAME, group), 'sidekiq', ['bundle', 'exec', 'sidekiq', '-q', group])
               for group in sidekiq_groups]
    return [('config', config), ('migrate-pre', [job]), ('web', web_objs), ('streaming', streaming_objs),
            ('sidekiq', sidekiq)]


@pytest.fixture(scope='module')
def rbac_cluster(tmp_path_factory):
    """A cluster of its own with --authorization-mode=Node,RBAC, the namespace and docs/rbac/deployer.yml applied
    with the admin credentials, and a kubeconfig that holds nothing but a short-lived token of the ServiceAccount."""
    state = tmp_path_factory.mktemp('rbac-cluster')
    cluster = LocalCluster(state / 'cluster', verbose=False, authorization='RBAC')
    admin = str(cluster.start())
    try:
        def kubectl(*args, kubeconfig=admin, check=True):
            return subprocess.run(['kubectl', '--kubeconfig', kubeconfig, *args], capture_output=True, text=True,
                                  check=check, timeout=120)
        kubectl('create', 'namespace', NAMESPACE)
        kubectl('apply', '-f', DEPLOYER_YML)
        token = kubectl('-n', NAMESPACE, 'create', 'token', 'mastodon-deployer', '--duration=1h').stdout.strip()
        with open(admin, encoding='utf-8') as handle:
            cfg = yaml.safe_load(handle)
        cfg['users'] = [{'name': 'deployer', 'user': {'token': token}}]
        cfg['contexts'][0]['context']['user'] = 'deployer'
        cfg['contexts'][0]['context']['namespace'] = NAMESPACE
        deployer = state / 'deployer-kubeconfig'
        deployer.write_text(yaml.safe_dump(cfg), encoding='utf-8')
        deployer.chmod(0o600)
        yield cluster, str(deployer), kubectl
    finally:
        cluster.stop()


def _run(run_playbook, kubeconfig, components):
    res = run_playbook(PLAYBOOK, extra_vars={
        'kubeconfig': kubeconfig,
        'components': [{'component': c, 'objects': objs} for c, objs in components]})
    assert res.data is not None, res.stdout + res.stderr
    applied = res.result('apply')
    failures = [r.get('msg') for r in applied.get('results', []) if r.get('failed')]
    assert not failures and res.returncode == 0, failures or res.stdout[-3000:]
    return res, dict((r['item']['component'], r) for r in applied['results'])


def _denied(events):
    return [(e['verb'], e['requestURI'], e['responseStatus']['code']) for e in events
            if (e.get('responseStatus') or {}).get('code') in (401, 403)]


def test_deploy_with_a_namespaced_role_only(rbac_cluster, run_playbook):
    cluster, kubeconfig, kubectl = rbac_cluster
    audit = AuditLog(str(cluster.audit_log))
    # The token really is namespaced: RBAC is on and grants nothing across the cluster.
    denied = kubectl('get', 'namespaces', kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and 'Forbidden' in denied.stderr, denied.stderr
    kept = {'SECRET_KEY_BASE': secrets.token_hex(64), 'VAPID_PRIVATE_KEY': 'test-vapid-private',
            'VAPID_PUBLIC_KEY': 'test-vapid-public'}

    since = audit.mark()
    res, first = _run(run_playbook, kubeconfig, deploy_objects(kept))
    assert res.result('read the kept secrets')['exists'] is False
    assert dict((c, r['changed']) for c, r in first.items()) == dict.fromkeys(first, True)
    assert res.result('read the kept secrets again')['data'] == kept
    web = json.loads(kubectl('-n', NAMESPACE, 'get', 'deployment', NAME + '-web', '-o', 'json').stdout)
    assert web['status']['readyReplicas'] == 2
    events = audit.events(since)
    assert [e for e in events if e['user']['username'] == SERVICE_ACCOUNT], 'the deploy did not run as the ServiceAccount'
    assert all(e['user']['username'] == SERVICE_ACCOUNT for e in events)
    assert _denied(events) == []
    cluster_scoped = [(e['verb'], e['requestURI']) for e in events
                      if e.get('objectRef') and not e['objectRef'].get('namespace')]
    assert cluster_scoped == []
    first_figures = dict((c, [o['action'] for o in r['objects']]) for c, r in first.items())

    since = audit.mark()
    res, second = _run(run_playbook, kubeconfig, deploy_objects(kept))
    assert dict((c, r['changed']) for c, r in second.items()) == dict.fromkeys(second, False), second
    assert res.result('read the kept secrets')['data'] == kept
    assert _denied(audit.events(since)) == []

    # Prune: a sidekiq group and the autoscaler are no longer rendered.
    since = audit.mark()
    res, third = _run(run_playbook, kubeconfig, deploy_objects(kept, sidekiq_groups=('default',), hpa=False))
    assert [(p['kind'], p['name']) for p in third['sidekiq']['pruned']] == [('Deployment', NAME + '-sidekiq-pull')]
    assert [(p['kind'], p['name']) for p in third['web']['pruned']] == [('HorizontalPodAutoscaler', NAME + '-web')]
    assert third['config']['changed'] is False and third['streaming']['changed'] is False
    gone = kubectl('-n', NAMESPACE, 'get', 'deployment', NAME + '-sidekiq-pull', check=False)
    assert gone.returncode != 0 and 'NotFound' in gone.stderr
    assert _denied(audit.events(since)) == []
    print('first run:', json.dumps(first_figures))
    print('re-run changed:', json.dumps(dict((c, r['changed']) for c, r in second.items())))


def test_failed_migration_details_with_the_role(rbac_cluster, k8s_apply):
    """A failed Job is reported with its pod's reason: the Role's pods list (and pods/log get) are enough."""
    cluster, kubeconfig, dummy = rbac_cluster
    audit = AuditLog(str(cluster.audit_log))
    job = dict(deploy_objects({})[1][1][0])
    job['metadata'] = _meta(NAME + '-migrate-post-v4-5-15', 'migrations-post')
    job['spec']['template']['metadata']['annotations'] = {'sim.fediops.test/fail': 'true',
                                                          'sim.fediops.test/fail-message': 'PG::UndefinedTable'}
    since = audit.mark()
    res = k8s_apply(definitions=[job], namespace=NAMESPACE, apply_set=NAME + '-set-migrate-post', wait=True,
                    wait_timeout=60, kubeconfig=kubeconfig)
    assert res.get('failed') and 'PG::UndefinedTable' in res['msg'], res
    events = audit.events(since)
    assert ('list', 'pods') in [(e['verb'], (e.get('objectRef') or {}).get('resource')) for e in events]
    assert _denied(events) == []


def test_existing_install_moves_to_the_role(rbac_cluster, k8s_apply):
    """An install deployed with admin credentials and config_manage_namespace: true has Namespace recorded in its
    config ApplySet. The first run with the Role no longer declares it: the Namespace must neither be listed (the
    Role cannot) nor pruned (it holds everything), and nothing is denied."""
    cluster, kubeconfig, kubectl = rbac_cluster
    audit = AuditLog(str(cluster.audit_log))
    admin = str(cluster.kubeconfig)
    legacy = [{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NAMESPACE}},
              {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'legacy-env'}, 'data': {'A': '1'}}]
    res = k8s_apply(definitions=legacy, namespace=NAMESPACE, apply_set='legacy-set-config', kubeconfig=admin)
    assert not res.get('failed'), res
    since = audit.mark()
    res = k8s_apply(definitions=legacy[1:], namespace=NAMESPACE, apply_set='legacy-set-config', kubeconfig=kubeconfig)
    assert not res.get('failed'), res.get('msg')
    assert res['pruned'] == []
    assert any('namespaces it created are left in place' in w for w in res.get('warnings', [])), res
    assert kubectl('get', 'namespace', NAMESPACE, check=False).returncode == 0
    assert _denied(audit.events(since)) == []


def test_deploy_lock_with_the_role(rbac_cluster):
    """The deploy lock (plugins/module_utils/_deploy/lock.py: acquire, renew, release) with the Role only: the
    Lease verbs of docs/rbac/deployer.yml are enough, and a second holder is refused naming the first."""
    from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import lock
    from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient

    cluster, kubeconfig, dummy = rbac_cluster
    audit = AuditLog(str(cluster.audit_log))
    client = KubeClient(kubeconfig=kubeconfig)
    since = audit.mark()
    lease = lock.acquire(client, NAMESPACE, NAME, 'deployer one', 60)
    assert lease['spec']['holderIdentity'] == 'deployer one'
    with pytest.raises(lock.LockHeld, match='held by deployer one'):
        lock.acquire(client, NAMESPACE, NAME, 'deployer two', 60)
    lock.renew(client, NAMESPACE, NAME, 'deployer one', 60)
    assert lock.release(client, NAMESPACE, NAME, 'deployer one') is True
    assert lock.acquire(client, NAMESPACE, NAME, 'deployer two', 60)['spec']['holderIdentity'] == 'deployer two'
    assert lock.release(client, NAMESPACE, NAME, 'deployer two') is True
    events = audit.events(since)
    assert _denied(events) == []
    assert {'create', 'update', 'get'} <= set(e['verb'] for e in events if (e.get('objectRef') or {}).get('resource') == 'leases')
