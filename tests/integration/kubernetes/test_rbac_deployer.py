"""The deploy with a ServiceAccount token bound only to docs/rbac/deployer.yml's namespaced Role (issue 17, item 4),
on a cluster of the test's own with --authorization-mode=Node,RBAC.

The objects are the deploy's own (_manifests.build of the planner's model, without the Namespace:
config_manage_namespace false), applied per component with ApplySets named as the deploy names them
(docs/dev/shapes.md section 2), waiting for rollouts and Jobs. RBAC is the API server's
(k8s.io/kubernetes v1.34.4 plugin/pkg/auth/authorizer/rbac); discovery is readable by every authenticated user
through the ClusterRole system:discovery (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
"""
import os
import subprocess
import sys

import pytest
import yaml

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(_ROOT)))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

from cluster.localcluster import LocalCluster  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_secret_info import read_secret  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import COMPONENTS, build  # noqa: E402
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import (  # noqa: E402
    make_model, use_migrations_stand_in)

DEPLOYER_YML = os.path.join(_ROOT, 'docs', 'rbac', 'deployer.yml')
SERVICE_ACCOUNT = 'mastodon-deployer'


@pytest.fixture(scope='module')
def rbac_cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp('rbac') / 'cluster', verbose=False, rbac=True, audit=False)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def admin_kubectl(cluster, *args, stdin=None):
    return subprocess.run(['kubectl', '--kubeconfig', str(cluster.kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, check=True).stdout


def deployer_objects():
    """The items of docs/rbac/deployer.yml (one List document)."""
    with open(DEPLOYER_YML, encoding='utf-8') as handle:
        return yaml.safe_load(handle)['items']


def token_kubeconfig(cluster, namespace, path, role_objects=None):
    """Namespace + deployer.yml (or the given objects) applied as admin; a kubeconfig with ONLY the
    ServiceAccount's short-lived token (TokenRequest, as `kubectl create token` documents it)."""
    admin_kubectl(cluster, 'create', 'namespace', namespace)
    if role_objects is None:
        admin_kubectl(cluster, 'apply', '-n', namespace, '-f', DEPLOYER_YML)
    else:
        admin_kubectl(cluster, 'apply', '-n', namespace, '-f', '-',
                      stdin=yaml.safe_dump({'apiVersion': 'v1', 'kind': 'List', 'items': role_objects}))
    token = admin_kubectl(cluster, 'create', 'token', SERVICE_ACCOUNT, '-n', namespace, '--duration=1h').strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'deployer',
              'clusters': admin['clusters'],
              'users': [{'name': 'deployer', 'user': {'token': token}}],
              'contexts': [{'name': 'deployer', 'context': {'cluster': admin['clusters'][0]['name'], 'user': 'deployer',
                                                            'namespace': namespace}}]}
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as handle:
        yaml.safe_dump(config, handle)
    return str(path)


def deploy(kubeconfig, namespace, manifests, components=COMPONENTS):
    """Each component with its own ApplySet <name>-set-<component>, in the deploy's order; {component: result}."""
    client = KubeClient(kubeconfig=kubeconfig)
    out = {}
    for component in components:
        applier = Applier(client, namespace=namespace, apply_set='masto-set-' + component, wait=True, wait_timeout=120)
        out[component] = applier.present(manifests[component])
        out[component]['warnings'] = applier.warnings
    return out


def test_deploy_with_a_namespaced_service_account_token(rbac_cluster, tmp_path, monkeypatch):
    use_migrations_stand_in(monkeypatch)
    namespace = 'social'
    kubeconfig = token_kubeconfig(rbac_cluster, namespace, tmp_path / 'deployer.kubeconfig')
    model = make_model(namespace=namespace, config_manage_namespace=False, config_network_policy=True,
                       web_hpa_enabled=True)
    manifests = build(model)
    kinds = sorted(set(o['kind'] for objects in manifests.values() for o in objects))
    assert 'Namespace' not in kinds and {'NetworkPolicy', 'HorizontalPodAutoscaler', 'PodDisruptionBudget',
                                         'Ingress', 'Job', 'Deployment', 'ServiceAccount'} <= set(kinds), kinds

    first = deploy(kubeconfig, namespace, manifests)
    summary = dict((c, sorted(set(o['action'] for o in r['objects']))) for c, r in first.items())
    print('first run:', dict((c, (r['changed'], len(r['objects']))) for c, r in first.items()), summary)
    assert all(r['changed'] for r in first.values())
    assert set(a for actions in summary.values() for a in actions) == {'created'}
    assert not [w for r in first.values() for w in r['warnings']]

    again = deploy(kubeconfig, namespace, manifests)
    print('re-run:', dict((c, r['changed']) for c, r in again.items()))
    assert not any(r['changed'] for r in again.values()), [
        (c, o['kind'], o['name'], o['action']) for c, r in again.items() for o in r['objects'] if o['action'] != 'unchanged']

    # Prune: without the HPA, the web ApplySet deletes it, with the same token.
    fewer = build(make_model(namespace=namespace, config_manage_namespace=False, config_network_policy=True,
                             web_hpa_enabled=False))
    pruned = deploy(kubeconfig, namespace, fewer, components=['web'])['web']
    print('prune:', pruned['pruned'])
    assert [(p['kind'], p['name']) for p in pruned['pruned']] == [('HorizontalPodAutoscaler', 'masto-web')]
    left = admin_kubectl(rbac_cluster, 'get', 'horizontalpodautoscalers', '-n', namespace, '-o', 'name')
    assert left.strip() == ''

    # The plan's check that the namespace exists: its own Namespace object only.
    client = KubeClient(kubeconfig=kubeconfig)
    assert client.request('GET', '/api/v1/namespaces/' + namespace)[0] == 200
    assert client.request('GET', '/api/v1/namespaces/default')[0] == 403
    assert client.request('GET', '/api/v1/namespaces')[0] == 403

    # k8s_secret_info's read of the kept secrets, with the same token.
    kept = read_secret(KubeClient(kubeconfig=kubeconfig), namespace, 'masto-generated-secrets')
    assert kept['exists'] and kept['data'] == model['kept_secrets']

    # An ApplySet parent that remembers a Namespace (an earlier run as admin with config_manage_namespace true):
    # the token cannot list namespaces; the run warns, keeps the Namespace and succeeds.
    with_namespace = build(make_model(namespace=namespace, config_network_policy=True, web_hpa_enabled=True),
                           components=['config'])
    deploy(str(rbac_cluster.kubeconfig), namespace, with_namespace, components=['config'])
    after = deploy(kubeconfig, namespace, manifests, components=['config'])['config']
    assert any('cannot list Namespace (HTTP 403' in w for w in after['warnings']), after['warnings']
    assert admin_kubectl(rbac_cluster, 'get', 'namespace', namespace, '-o', 'name').strip() == 'namespace/' + namespace


def test_a_role_missing_a_rule_is_a_clear_403(rbac_cluster, tmp_path, monkeypatch):
    """The check above can fail: without the policy/poddisruptionbudgets rule the web component is refused,
    and the error names the resource."""
    use_migrations_stand_in(monkeypatch)
    namespace = 'social-norule'
    documents = deployer_objects()
    role = next(doc for doc in documents if doc['kind'] == 'Role')
    role['rules'] = [rule for rule in role['rules'] if 'poddisruptionbudgets' not in rule['resources']]
    kubeconfig = token_kubeconfig(rbac_cluster, namespace, tmp_path / 'deployer.kubeconfig', documents)
    manifests = build(make_model(namespace=namespace, config_manage_namespace=False))
    deploy(kubeconfig, namespace, manifests, components=['config'])
    with pytest.raises(KubeError) as info:
        deploy(kubeconfig, namespace, manifests, components=['web'])
    assert info.value.status == 403
    assert 'HTTP 403' in info.value.msg and 'poddisruptionbudgets' in info.value.msg, info.value.msg
    print('missing rule:', info.value.msg)


def test_the_guide_lists_the_roles_rules():
    """docs/docsite/rst/guide_rbac.rst shows the rules of docs/rbac/deployer.yml (grouped differently): the same
    (group, resource, verb) triples."""
    def triples(rules):
        return sorted((group, resource, verb) for rule in rules for group in rule['apiGroups']
                      for resource in rule['resources'] for verb in rule['verbs'])

    role = next(doc for doc in deployer_objects() if doc['kind'] == 'Role')
    with open(os.path.join(_ROOT, 'docs', 'docsite', 'rst', 'guide_rbac.rst'), encoding='utf-8') as handle:
        text = handle.read()
    lines = text.split('.. code-block:: yaml', 1)[1].splitlines()[1:]
    block = []
    for line in lines:
        if line.strip() and not line.startswith(' '):
            break  # the first unindented line ends the block
        block.append(line)
    assert triples(yaml.safe_load('\n'.join(block))) == triples(role['rules'])
