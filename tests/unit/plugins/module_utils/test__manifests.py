# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manifest builder (_manifests.py): every component and option, from the roles' real defaults.

Mastodon facts checked here are cited from tests/data/mastodon/FACTS.md (v4.6.5): uid/gid 991
(Dockerfile:45-47, streaming/Dockerfile:29-31), the Sidekiq ready file (Dockerfile:64-72,
config/initializers/sidekiq.rb:11-18), object storage switches (config/initializers/paperclip.rb:38,118,142,163),
NODE_EXTRA_CA_CERTS read by node at start, PGSSLROOTCERT read by libpq (config/database.yml:7).
"""

from __future__ import annotations

import base64
import copy
import os
import re

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError
from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import (
    COMPONENTS, SIDEKIQ_READY_FILENAME, build, media_storage_problem, migration_job_name, origin_of, sidekiq_command,
    sidekiq_groups)
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import (
    CA, REDIS_CA, make_model, role_defaults, use_migrations_stand_in)


@pytest.fixture(autouse=True)
def migrations_module(monkeypatch):
    use_migrations_stand_in(monkeypatch)


def find(objects, kind, name):
    matches = [o for o in objects if o['kind'] == kind and o['metadata']['name'] == name]
    assert len(matches) == 1, [(o['kind'], o['metadata']['name']) for o in objects]
    return matches[0]


def names(objects):
    return sorted('%s/%s' % (o['kind'], o['metadata']['name']) for o in objects)


def pod_specs(result):
    for component in ('migrate-pre', 'web', 'streaming', 'sidekiq', 'migrate-post'):
        for obj in result[component]:
            if obj['kind'] in ('Deployment', 'Job'):
                yield obj, obj['spec']['template']['spec']


def env_of(container):
    return dict((e['name'], e['value']) for e in container['env'])


def decode(secret):
    return dict((k, base64.b64decode(v).decode()) for k, v in secret['data'].items())


# ------------------------------------------------------------------------------------------------ components
def test_components_in_apply_order_and_object_names():
    result = build(make_model())
    assert list(result) == list(COMPONENTS)
    assert result.objects is result
    assert names(result['config']) == [
        'ConfigMap/masto-env', 'ConfigMap/masto-streaming-env', 'Namespace/social', 'Secret/masto-db-ca',
        'Secret/masto-db-direct', 'Secret/masto-env', 'Secret/masto-generated-secrets', 'Secret/masto-streaming-env',
        'ServiceAccount/masto']
    assert names(result['web']) == ['Deployment/masto-web', 'Ingress/masto-web', 'PodDisruptionBudget/masto-web',
                                    'Service/masto-web']
    assert names(result['streaming']) == ['Deployment/masto-streaming', 'Ingress/masto-streaming',
                                          'PodDisruptionBudget/masto-streaming', 'Service/masto-streaming']
    assert names(result['sidekiq']) == ['Deployment/masto-sidekiq-all']
    assert names(result['migrate-pre']) == ['Job/masto-migrate-pre-v4-6-5']
    assert names(result['migrate-post']) == ['Job/masto-migrate-post-v4-6-5']
    for objects in result.values():
        for obj in objects:
            if obj['kind'] != 'Namespace':
                assert obj['metadata']['namespace'] == 'social'


def test_only_requested_components_and_unknown_component():
    assert list(build(make_model(), components=('web',))) == ['web']
    with pytest.raises(ConfigError, match='unknown component webb'):
        build(make_model(), components=('webb',))


def test_model_is_not_modified():
    model = make_model()
    before = copy.deepcopy(model)
    build(model)
    assert model == before


def test_config_env_sets_and_secrets():
    result = build(make_model())
    config = result['config']
    rails_config = find(config, 'ConfigMap', 'masto-env')['data']
    assert rails_config == {'DB_HOST': 'pool.db', 'DB_USER': 'mastodon', 'LOCAL_DOMAIN': 'social.example'}
    assert decode(find(config, 'Secret', 'masto-env')) == {'DB_PASS': 'pw-rails', 'SECRET_KEY_BASE': 'skb'}
    assert decode(find(config, 'Secret', 'masto-streaming-env')) == {'DB_PASS': 'pw-rails'}
    assert decode(find(config, 'Secret', 'masto-generated-secrets')) == {'SECRET_KEY_BASE': 'skb', 'VAPID_PRIVATE_KEY': 'vp'}
    direct = decode(find(config, 'Secret', 'masto-db-direct'))
    assert direct['DB_USER'] == 'mastodon' and direct['DB_PASS'] == 'pw-app' and direct['DB_HOST'] == 'direct.db'
    assert decode(find(config, 'Secret', 'masto-db-ca')) == {'ca.crt': CA}
    sa = find(config, 'ServiceAccount', 'masto')
    assert sa['automountServiceAccountToken'] is False
    for obj in config:
        if obj['kind'] == 'ConfigMap':
            assert 'pw-rails' not in str(obj)


def test_namespace_only_when_managed():
    result = build(make_model(config_manage_namespace=False))
    assert not [o for o in result['config'] if o['kind'] == 'Namespace']


def test_namespace_enforces_pod_security():
    labels = find(build(make_model())['config'], 'Namespace', 'social')['metadata']['labels']
    assert labels['pod-security.kubernetes.io/enforce'] == 'restricted'
    assert labels['pod-security.kubernetes.io/warn'] == 'restricted'
    assert labels['app.kubernetes.io/instance'] == 'masto'
    labels = find(build(make_model(config_namespace_pod_security=''))['config'], 'Namespace', 'social')['metadata']['labels']
    assert not [key for key in labels if key.startswith('pod-security.kubernetes.io/')]


def test_no_ca_no_secret_no_mount_no_ca_env():
    model = make_model()
    model['ca_pem'] = ''
    result = build(model)
    assert not [o for o in result['config'] if o['metadata']['name'] == 'masto-db-ca']
    for dummy, spec in pod_specs(result):
        assert 'db-ca' not in [v['name'] for v in spec['volumes']]
        env = env_of(spec['containers'][0])
        assert 'PGSSLROOTCERT' not in env and 'NODE_EXTRA_CA_CERTS' not in env


def test_ca_env_per_component():
    """libpq (Rails) reads PGSSLROOTCERT; node reads NODE_EXTRA_CA_CERTS at process start (README: Database and TLS)."""
    result = build(make_model(config_ca_mount_dir='/etc/ca/'))
    for obj, spec in pod_specs(result):
        container = spec['containers'][0]
        env = env_of(container)
        assert {'name': 'db-ca', 'mountPath': '/etc/ca/', 'readOnly': True} in container['volumeMounts']
        if obj['metadata']['name'] == 'masto-streaming':
            assert env['NODE_EXTRA_CA_CERTS'] == '/etc/ca/ca.crt' and 'PGSSLROOTCERT' not in env
        else:
            assert env['PGSSLROOTCERT'] == '/etc/ca/ca.crt' and 'NODE_EXTRA_CA_CERTS' not in env


def test_redis_ca_bundled_for_node():
    model = make_model()
    model['redis_ca_pem'] = REDIS_CA
    result = build(model)
    data = decode(find(result['config'], 'Secret', 'masto-db-ca'))
    assert data['redis-ca.crt'] == REDIS_CA
    assert data['node-extra-ca.crt'] == CA + REDIS_CA
    streaming = find(result['streaming'], 'Deployment', 'masto-streaming')
    env = env_of(streaming['spec']['template']['spec']['containers'][0])
    assert env['NODE_EXTRA_CA_CERTS'] == '/etc/mastodon/db-ca/node-extra-ca.crt'


def test_each_component_reads_only_its_env():
    result = build(make_model())
    for obj, spec in pod_specs(result):
        refs = [list(ref.values())[0]['name'] for ref in spec['containers'][0]['envFrom']]
        if obj['metadata']['name'] == 'masto-streaming':
            assert refs == ['masto-streaming-env', 'masto-streaming-env']
        elif obj['kind'] == 'Job':
            assert refs == ['masto-env', 'masto-env', 'masto-db-direct']
        else:
            assert refs == ['masto-env', 'masto-env']


def test_checksum_annotation_follows_env_and_ca():
    def annotation(model, component, name):
        obj = find(build(model)[component], 'Deployment', name)
        return obj['spec']['template']['metadata']['annotations']['fediops.mastodon/config-checksum']

    base = make_model()
    web, streaming = annotation(base, 'web', 'masto-web'), annotation(base, 'streaming', 'masto-streaming')
    changed = make_model()
    changed['checksums']['streaming'] = 'c' * 64
    assert annotation(changed, 'web', 'masto-web') == web
    assert annotation(changed, 'streaming', 'masto-streaming') != streaming
    changed = make_model()
    changed['ca_pem'] = CA.replace('Bdb', 'Bnew')
    assert annotation(changed, 'web', 'masto-web') != web


# ------------------------------------------------------------------------------------------------ pod security
def test_pods_are_restricted_with_a_read_only_root():
    """Pod Security 'restricted': non-root, uid 991 (Dockerfile:45-47), seccomp, no capabilities, no escalation;
    no token (the ServiceAccount's and the pod's automount off)."""
    result = build(make_model())
    count = 0
    for dummy, spec in pod_specs(result):
        count += 1
        assert spec['serviceAccountName'] == 'masto' and spec['automountServiceAccountToken'] is False
        assert spec['securityContext'] == {'runAsUser': 991, 'runAsGroup': 991, 'fsGroup': 991, 'runAsNonRoot': True,
                                           'seccompProfile': {'type': 'RuntimeDefault'}}
        for container in spec['containers']:
            ctx = container['securityContext']
            assert ctx['readOnlyRootFilesystem'] is True and ctx['allowPrivilegeEscalation'] is False
            assert ctx['capabilities'] == {'drop': ['ALL']} and ctx['runAsNonRoot'] is True
            mounts = dict((m['mountPath'], m['name']) for m in container['volumeMounts'])
            assert mounts['/tmp'] == 'tmp'
            if container['name'] == 'streaming':
                assert '/opt/mastodon/tmp' not in mounts
            else:
                assert mounts['/opt/mastodon/tmp'] == 'rails-tmp'
        kinds = set(k for v in spec['volumes'] for k in v if k != 'name')
        assert kinds <= {'emptyDir', 'secret', 'persistentVolumeClaim'}
    assert count == 5


def test_read_only_root_can_be_turned_off():
    result = build(make_model(config_read_only_root_filesystem=False))
    for dummy, spec in pod_specs(result):
        assert spec['containers'][0]['securityContext']['readOnlyRootFilesystem'] is False


def test_image_by_digest_and_job_name():
    digest = 'sha256:' + 'ab' * 32
    model = make_model()
    model['version'] = 'v4.6.5@' + digest
    model['image'] = 'ghcr.io/mastodon/mastodon@' + digest
    result = build(model)
    job = result['migrate-pre'][0]
    name = job['metadata']['name']
    assert len(name) <= 63 and name.startswith('masto-migrate-pre-v4-6-5-sha256-')
    assert job['spec']['template']['spec']['containers'][0]['image'] == 'ghcr.io/mastodon/mastodon@' + digest
    label = re.compile(r'\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?\Z')
    for objects in result.values():
        for obj in objects:
            for value in obj['metadata']['labels'].values():
                assert label.match(value), (obj['kind'], value)
    assert job['metadata']['labels']['app.kubernetes.io/version'] == 'v4.6.5'
    other = migration_job_name('masto', 'pre', 'v4.6.5@sha256:' + 'cd' * 32)
    assert other != name and len(other) <= 63
    assert migration_job_name('masto', 'post', 'v4.6.5') == 'masto-migrate-post-v4-6-5'
    assert migration_job_name('x' * 60, 'pre', 'v4.6.5')[-9:-8] == '-'


# ------------------------------------------------------------------------------------------------ web
def test_web_deployment_port_of_template():
    result = build(make_model(web_extra_env={'RAILS_LOG_LEVEL': 'warn', 'FLAG': True}, web_affinity={'x': 1},
                              web_pod_annotations={'a': 'b'}, config_pod_annotations={'c': 'd'}))
    dep = find(result['web'], 'Deployment', 'masto-web')
    assert dep['spec']['replicas'] == 2 and dep['spec']['strategy']['type'] == 'RollingUpdate'
    pod = dep['spec']['template']
    assert pod['metadata']['annotations']['a'] == 'b' and pod['metadata']['annotations']['c'] == 'd'
    assert pod['spec']['affinity'] == {'x': 1}
    container = pod['spec']['containers'][0]
    assert container['command'] == ['bundle', 'exec', 'puma', '-C', 'config/puma.rb']
    env = env_of(container)
    assert env['WEB_CONCURRENCY'] == '2' and env['MAX_THREADS'] == '8' and env['FLAG'] == 'true'
    assert env['RAILS_LOG_LEVEL'] == 'warn'
    assert container['readinessProbe']['httpGet'] == {'path': '/health', 'port': 'http'}
    assert container['resources'] == role_defaults()['web_resources']
    ingress = find(result['web'], 'Ingress', 'masto-web')
    assert ingress['spec']['rules'][0]['host'] == 'social.example'
    assert 'tls' not in ingress['spec']


def test_web_extra_env_rejects_mappings():
    with pytest.raises(ConfigError, match='web_extra_env.*key BAD'):
        build(make_model(web_extra_env={'BAD': {'x': 1}}))


def test_web_hpa_and_no_pdb_and_httproute():
    result = build(make_model(web_hpa_enabled=True, web_pdb_enabled=False, web_exposure='httproute',
                              web_gateway_parent_refs=[{'name': 'gw'}]))
    assert names(result['web']) == ['Deployment/masto-web', 'HTTPRoute/masto-web', 'HorizontalPodAutoscaler/masto-web',
                                    'Service/masto-web']
    assert 'replicas' not in find(result['web'], 'Deployment', 'masto-web')['spec']
    hpa = find(result['web'], 'HorizontalPodAutoscaler', 'masto-web')
    assert hpa['spec']['minReplicas'] == 2 and hpa['spec']['maxReplicas'] == 6
    route = find(result['web'], 'HTTPRoute', 'masto-web')
    assert route['spec']['parentRefs'] == [{'name': 'gw'}] and route['spec']['hostnames'] == ['social.example']


def test_web_ingress_tls_and_no_exposure():
    result = build(make_model(web_ingress_tls_secret='tls-web'))
    assert find(result['web'], 'Ingress', 'masto-web')['spec']['tls'] == [
        {'hosts': ['social.example'], 'secretName': 'tls-web'}]
    assert names(build(make_model(web_exposure='none'))['web']) == [
        'Deployment/masto-web', 'PodDisruptionBudget/masto-web', 'Service/masto-web']


# ------------------------------------------------------------------------------------------------ streaming
def test_streaming_on_the_web_host_path_and_on_its_own_host():
    result = build(make_model())
    dep = find(result['streaming'], 'Deployment', 'masto-streaming')
    container = dep['spec']['template']['spec']['containers'][0]
    assert container['image'] == 'ghcr.io/mastodon/mastodon-streaming:v4.6.5'
    assert container['command'] == ['node', './streaming']
    assert env_of(container)['DB_SSLMODE'] == 'verify-full'  # derived: Rails' default prefer (no DB_SSLMODE in this model)
    path = find(result['streaming'], 'Ingress', 'masto-streaming')['spec']['rules'][0]
    assert path['host'] == 'social.example' and path['http']['paths'][0]['path'] == '/api/v1/streaming'
    model = make_model()
    model['streaming_host'] = 'streaming.social.example'
    rule = find(build(model)['streaming'], 'Ingress', 'masto-streaming')['spec']['rules'][0]
    assert rule['host'] == 'streaming.social.example' and rule['http']['paths'][0]['path'] == '/'


# ------------------------------------------------------------------------------------------------ sidekiq
def test_sidekiq_default_group_readiness_from_the_ready_file():
    """config/initializers/sidekiq.rb:11-18 touches tmp/$MASTODON_SIDEKIQ_READY_FILENAME (Dockerfile:64-72);
    tmp is the writable rails-tmp emptyDir."""
    dep = build(make_model())['sidekiq'][0]
    assert dep['spec']['strategy'] == {'type': 'Recreate'} and dep['spec']['replicas'] == 1
    container = dep['spec']['template']['spec']['containers'][0]
    assert container['command'] == ['bundle', 'exec', 'sidekiq', '-c', '25', '-t', '25', '-q', 'default,8', '-q', 'push,6',
                                    '-q', 'ingress,4', '-q', 'mailers,2', '-q', 'pull', '-q', 'scheduler', '-q', 'fasp']
    env = env_of(container)
    assert env['DB_POOL'] == '25' and env['MASTODON_SIDEKIQ_READY_FILENAME'] == SIDEKIQ_READY_FILENAME
    probe = container['readinessProbe']['exec']['command']
    assert probe == ['cat', '/opt/mastodon/tmp/' + SIDEKIQ_READY_FILENAME]
    writable = [m['mountPath'] for m in container['volumeMounts'] if not m.get('readOnly')]
    assert os.path.dirname(probe[1]) in writable
    assert dep['metadata']['annotations']['fediops.mastodon/sidekiq-queues'] == \
        'default,push,ingress,mailers,pull,scheduler,fasp'


def test_sidekiq_several_groups():
    workers = [{'name': 'main', 'queues': ['default,8', {'name': 'push', 'weight': 6}, 'ingress', 'mailers'],
                'replicas': 3, 'concurrency': 20, 'node_selector': {'pool': 'big'}},
               {'name': 'sched', 'queues': ['scheduler', 'pull', 'fasp'], 'resources': {'requests': {'cpu': '1'}}}]
    result = build(make_model(sidekiq_workers=workers))
    main = find(result['sidekiq'], 'Deployment', 'masto-sidekiq-main')
    sched = find(result['sidekiq'], 'Deployment', 'masto-sidekiq-sched')
    assert main['spec']['replicas'] == 3 and main['spec']['strategy']['type'] == 'RollingUpdate'
    assert main['spec']['template']['spec']['nodeSelector'] == {'pool': 'big'}
    assert main['spec']['template']['spec']['containers'][0]['command'][3:] == [
        '-c', '20', '-t', '25', '-q', 'default,8', '-q', 'push,6', '-q', 'ingress', '-q', 'mailers']
    assert main['spec']['selector']['matchLabels']['fediops.mastodon/sidekiq-group'] == 'main'
    assert sched['spec']['strategy'] == {'type': 'Recreate'}
    assert sched['spec']['template']['spec']['containers'][0]['resources'] == {'requests': {'cpu': '1'}}
    assert main['spec']['template']['spec']['containers'][0]['resources'] == role_defaults()['sidekiq_resources']


DEFAULTS = {'resources': {}, 'node_selector': {}, 'tolerations': [], 'max_concurrency': 30}
ALL = ['default', 'push', 'ingress', 'mailers', 'pull', 'scheduler', 'fasp']


@pytest.mark.parametrize('workers, message', [
    ([], 'at least one worker group'),
    ('all', 'at least one worker group'),
    (['all'], 'item 0 must be a mapping'),
    ([{'name': 'All', 'queues': ALL}], 'group All: name must be a DNS label'),
    ([{'name': 'all', 'queues': []}], 'group all: queues must be a non-empty list'),
    ([{'name': 'all', 'queues': ALL + ['mailer']}], 'group all: unknown queue mailer \\(did you mean mailers\\?\\)'),
    ([{'name': 'all', 'queues': ALL + ['default']}], 'group all: queue default is listed twice'),
    ([{'name': 'all', 'queues': ALL, 'replica': 3}], 'group all: unknown key replica \\(did you mean replicas\\?\\)'),
    ([{'name': 'all', 'queues': ALL, 'replicas': 'two'}], 'group all: replicas must be an integer'),
    ([{'name': 'all', 'queues': ALL, 'replicas': True}], 'group all: replicas must be an integer'),
    ([{'name': 'all', 'queues': ALL, 'concurrency': 50}], 'group all: concurrency must be an integer between 1 and 30'),
    ([{'name': 'all', 'queues': ALL, 'replicas': 2}], 'group all processes the scheduler queue with replicas: 2'),
    ([{'name': 'all', 'queues': ['default,x'] + ALL[1:]}], 'group all: queue item .default,x. must be'),
    ([{'name': 'all', 'queues': [{'name': 'default', 'weight': 0}] + ALL[1:]}], 'queue default: weight must be at least 1'),
    ([{'name': 'all', 'queues': [{'name': 'default', 'weight': 'x'}] + ALL[1:]}], 'queue default: weight must be a positive'),
    ([{'name': 'all', 'queues': [{'weight': 2}] + ALL[1:]}], 'needs a name'),
    ([{'name': 'all', 'queues': [{'name': 'default', 'wieght': 2}] + ALL[1:]}], 'unknown key wieght'),
    ([{'name': 'all', 'queues': [5] + ALL[1:]}], 'each queue must be'),
    ([{'name': 'all', 'queues': ALL, 'tolerations': {}}], 'group all: tolerations must be a list'),
    ([{'name': 'a', 'queues': ALL}, {'name': 'a', 'queues': ['default']}], 'a appears more than once'),
    ([{'name': 'a', 'queues': ALL}, {'name': 'b', 'queues': ['scheduler']}], 'groups with it: a, b'),
    ([{'name': 'a', 'queues': ALL[:5] + ALL[6:]}], 'groups with it: none'),
    ([{'name': 'a', 'queues': ALL[:3] + ALL[4:]}], 'no group processes the queue\\(s\\) mailers'),
])
def test_sidekiq_groups_rejects_with_the_group_and_field(workers, message):
    with pytest.raises(ConfigError, match=message) as info:
        sidekiq_groups(workers, DEFAULTS)
    assert info.value.key == 'sidekiq_workers'


def test_sidekiq_groups_parse():
    groups = sidekiq_groups([{'name': 'all', 'queues': [' default , 8 ', {'name': 'push', 'weight': '6'}] + ALL[2:],
                              'tolerations': [{'key': 'k'}]}], dict(DEFAULTS, resources={'r': 1}))
    assert groups == [{'name': 'all', 'queues': [{'name': 'default', 'weight': 8}, {'name': 'push', 'weight': 6}]
                       + [{'name': q, 'weight': None} for q in ALL[2:]],
                       'concurrency': 25, 'replicas': 1, 'scheduler': True,
                       'resources': {'r': 1}, 'node_selector': {}, 'tolerations': [{'key': 'k'}]}]
    assert sidekiq_command(groups[0]) == ['bundle', 'exec', 'sidekiq', '-c', '25', '-q', 'default,8', '-q', 'push,6'] + [
        a for q in ALL[2:] for a in ('-q', q)]


# ------------------------------------------------------------------------------------------------ migrations
def test_migration_jobs_use_job_container_and_the_direct_endpoint():
    from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
    result = build(make_model(migrations_extra_env={'EXTRA': 1}, migrations_pod_annotations={'x': 'y'}))
    for component, phase in (('migrate-pre', 'pre'), ('migrate-post', 'post')):
        job = result[component][0]
        expected = _migrations.job_container(phase, extra_env={'EXTRA': '1'})
        container = job['spec']['template']['spec']['containers'][0]
        assert container['command'] == expected['command']
        env = env_of(container)
        for key, value in expected['env'].items():
            assert env[key] == value
        assert env['EXTRA'] == '1' and env['PREPARED_STATEMENTS'] == 'true'
        assert env['PGSSLROOTCERT'] == '/etc/mastodon/db-ca/ca.crt'
        assert container['envFrom'][-1] == {'secretRef': {'name': 'masto-db-direct'}}
        assert job['spec']['backoffLimit'] == 0 and job['spec']['activeDeadlineSeconds'] == 3600
        assert job['spec']['template']['spec']['restartPolicy'] == 'Never'
        assert job['spec']['template']['metadata']['annotations'] == {'x': 'y'}
        assert job['metadata']['labels']['app.kubernetes.io/component'] == 'migrations-' + phase


# ------------------------------------------------------------------------------------------------ media
def test_media_storage_problem_and_volume():
    model = make_model()
    assert 'config_media_volume_claim' in media_storage_problem(model)
    assert '/opt/mastodon/public/system' in media_storage_problem(model)
    model['env']['rails']['config']['S3_ENABLED'] = 'true'
    assert media_storage_problem(model) is None
    model = make_model(config_media_ephemeral=True)
    assert media_storage_problem(model) is None
    model = make_model(config_media_volume_claim='uploads')
    assert media_storage_problem(model) is None
    result = build(model)
    for obj, spec in pod_specs(result):
        claims = [v['persistentVolumeClaim']['claimName'] for v in spec['volumes'] if 'persistentVolumeClaim' in v]
        mounts = [m['mountPath'] for m in spec['containers'][0]['volumeMounts'] if m['name'] == 'media']
        if obj['metadata']['name'] == 'masto-web' or obj['metadata']['name'].startswith('masto-sidekiq-'):
            assert claims == ['uploads'] and mounts == ['/opt/mastodon/public/system']
        else:
            assert claims == [] and mounts == []


def test_media_volume_follows_paperclip_root_and_not_with_s3():
    model = make_model(config_media_volume_claim='uploads')
    model['env']['rails']['config']['PAPERCLIP_ROOT_PATH'] = ':rails_root/media'
    web = find(build(model)['web'], 'Deployment', 'masto-web')
    assert {'name': 'media', 'mountPath': '/opt/mastodon/media'} in web['spec']['template']['spec']['containers'][0]['volumeMounts']
    model['env']['rails']['secret']['S3_ENABLED'] = 'true'
    web = find(build(model)['web'], 'Deployment', 'masto-web')
    assert 'media' not in [v['name'] for v in web['spec']['template']['spec']['volumes']]


# ------------------------------------------------------------------------------------------------ network policy
def test_no_network_policy_by_default():
    assert not [o for c in build(make_model()).values() for o in c if o['kind'] == 'NetworkPolicy']


def test_network_policies():
    model = make_model(config_network_policy=True,
                       config_network_policy_ingress_namespace_labels={'kubernetes.io/metadata.name': 'ingress-nginx'},
                       config_network_policy_extra_egress=[{'ports': [{'port': 9000}]}])
    model['env']['rails']['config'].update({'SMTP_SERVER': 'smtp.example', 'SMTP_PORT': '2525', 'ES_ENABLED': 'true'})
    result = build(model)
    policies = dict((o['metadata']['name'], o['spec']) for o in result['config'] if o['kind'] == 'NetworkPolicy')
    assert sorted(policies) == ['masto-migrations', 'masto-sidekiq', 'masto-streaming', 'masto-web']

    def egress_ports(spec):
        return sorted((p.get('protocol', 'TCP'), p['port']) for rule in spec['egress'] for p in rule['ports'])

    web = policies['masto-web']
    assert web['policyTypes'] == ['Ingress', 'Egress']
    assert web['ingress'] == [{'ports': [{'protocol': 'TCP', 'port': 3000}], 'from': [
        {'namespaceSelector': {'matchLabels': {'kubernetes.io/metadata.name': 'ingress-nginx'}}}]}]
    assert egress_ports(web) == [('TCP', 53), ('TCP', 80), ('TCP', 443), ('TCP', 2525), ('TCP', 9000), ('TCP', 9200),
                                 ('TCP', 25060), ('TCP', 25061), ('UDP', 53)]
    assert policies['masto-streaming']['ingress'][0]['ports'] == [{'protocol': 'TCP', 'port': 4000}]
    assert egress_ports(policies['masto-streaming']) == [('TCP', 53), ('TCP', 25060), ('TCP', 25061), ('UDP', 53)]
    assert 'ingress' not in policies['masto-sidekiq'] and egress_ports(policies['masto-sidekiq']) == egress_ports(web)
    # Each policy selects exactly the pods of its component.
    labels = {}
    for component in ('web', 'streaming', 'sidekiq', 'migrate-pre'):
        for obj in result[component]:
            if obj['kind'] in ('Deployment', 'Job'):
                labels[component] = obj['spec']['template']['metadata']['labels']
    for policy, component in (('masto-web', 'web'), ('masto-streaming', 'streaming'), ('masto-sidekiq', 'sidekiq'),
                              ('masto-migrations', 'migrate-pre')):
        for other, pod_labels in labels.items():
            selected = all(pod_labels.get(k) == v for k, v in policies[policy]['podSelector']['matchLabels'].items())
            assert selected == (other == component), (policy, other)


def test_network_policy_reaches_the_ports_the_environment_names():
    """A self-managed PostgreSQL/Redis (DB_PORT, REDIS_URL: lib/mastodon/redis_configuration.rb) is reachable; SMTP
    without SMTP_PORT may use any usual submission port."""
    model = make_model(config_network_policy=True, config_network_policy_database_ports=[],
                       config_network_policy_redis_ports=[])
    model['env']['rails']['config'].update({'DB_PORT': '5432', 'SMTP_SERVER': 'smtp.example'})
    model['env']['rails']['secret']['REDIS_URL'] = 'rediss://:pw@redis.example:6380/0'
    model['env']['streaming']['secret']['REDIS_URL'] = 'redis://redis.example'
    model['db_direct']['DB_PORT'] = '5433'
    policies = dict((o['metadata']['name'], o['spec']) for o in build(model)['config'] if o['kind'] == 'NetworkPolicy')
    streaming_ports = sorted(p['port'] for rule in policies['masto-streaming']['egress'] for p in rule['ports'])
    assert streaming_ports == [53, 53, 5432, 5433, 6379, 6380]
    web_ports = sorted(p['port'] for rule in policies['masto-web']['egress'] for p in rule['ports'])
    assert web_ports == [25, 53, 53, 80, 443, 465, 587, 5432, 5433, 6379, 6380]


def test_network_policy_ingress_from_anywhere():
    result = build(make_model(config_network_policy=True))
    web = find(result['config'], 'NetworkPolicy', 'masto-web')
    assert web['spec']['ingress'] == [{'ports': [{'protocol': 'TCP', 'port': 3000}]}]


# ------------------------------------------------------------------------------------------------ origins
def test_origins_map_fields_to_variables():
    result = build(make_model(web_ingress_tls_secret='t', config_network_policy=True))
    origins = result.origins
    field = 'spec.template.spec.containers[0].resources.requests.cpu'
    assert origin_of(origins, 'Deployment', 'masto-web', field) == 'web_resources'
    assert origin_of(origins, 'Deployment', 'masto-streaming', field) == 'streaming_resources'
    assert origin_of(origins, 'Deployment', 'masto-sidekiq-all', field) == 'sidekiq_workers'
    assert origin_of(origins, 'Job', 'masto-migrate-pre-v4-6-5', field) == 'migrations_resources'
    assert origin_of(origins, 'Deployment', 'masto-web', 'spec.strategy.rollingUpdate.maxSurge') == 'web_strategy'
    assert origin_of(origins, 'Deployment', 'masto-web', 'spec.template.spec.nodeSelector') == 'web_node_selector'
    assert origin_of(origins, 'Ingress', 'masto-web', 'spec.rules[0].host') == 'config_web_domain'
    assert origin_of(origins, 'Ingress', 'masto-web', 'spec.tls[0].secretName') == 'web_ingress_tls_secret'
    assert origin_of(origins, 'PodDisruptionBudget', 'masto-web', 'spec.minAvailable') == 'web_pdb_min_available'
    assert origin_of(origins, 'Namespace', 'social', 'metadata.name') == 'config_namespace'
    assert origin_of(origins, 'NetworkPolicy', 'masto-web', 'spec.egress[5].ports[0].port') == \
        'config_network_policy_extra_egress'
    assert origin_of(origins, 'Deployment', 'masto-web', 'spec.templates') is None
    assert origin_of(origins, 'Deployment', 'nothing', field) is None
    # Every origin names a variable the model has (or the new ones of docs/dev/manifests-vars.yml).
    known = set(role_defaults())
    assert set(origins.values()) <= known, set(origins.values()) - known


def test_migrations_connect_as_the_application_user():
    """Tables belong to the user that creates them (README: Migrations): the db-direct user is the application's."""
    model = make_model()
    model['db_direct']['DB_USER'] = 'doadmin'
    with pytest.raises(ConfigError, match='config_db_user: the migrations would connect as doadmin but the application '
                                          'as mastodon'):
        build(model)


def test_a_variable_missing_from_the_model_is_named():
    model = make_model()
    del model['vars']['config_network_policy']
    with pytest.raises(ConfigError, match='config_network_policy: missing from the model'):
        build(model)
    del model['vars']['config_media_ephemeral']
    with pytest.raises(ConfigError, match='config_media_ephemeral: missing'):
        media_storage_problem(model)
