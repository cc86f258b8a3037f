# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a real pod of the rendered manifests needs (_manifests.py), read against Mastodon's code (v4.6.5):

* uploads without object storage go to public/system (config/initializers/paperclip.rb:163): with a read-only root
  something writable must be mounted there, also with config_media_ephemeral;
* Bootsnap's cache is under tmp/cache (config/boot.rb: Bootsnap.setup(cache_dir: tmp/cache)), precompiled into the
  image; the rails-tmp emptyDir must not hide it;
* Puma answers GET /health from its request threads: liveness must not depend on a free thread;
* streaming/database.js:85-97: disable/empty -> no TLS, no-verify -> TLS unverified, anything else -> verified TLS;
* config/initializers/chewy.rb:4-9: ES_CA_FILE names the CA of Elasticsearch/OpenSearch.
"""

from __future__ import annotations

import base64

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import RAILS_TMP, build, origin_of
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import (
    CA, make_model, use_migrations_stand_in)

MEDIA = '/opt/mastodon/public/system'
ES_CA = '-----BEGIN CERTIFICATE-----\nMIIBes\n-----END CERTIFICATE-----\n'


@pytest.fixture(autouse=True)
def migrations_module(monkeypatch):
    use_migrations_stand_in(monkeypatch)


def workloads(result):
    for component in ('migrate-pre', 'web', 'streaming', 'sidekiq', 'migrate-post'):
        for obj in result[component]:
            if obj['kind'] in ('Deployment', 'Job'):
                yield component, obj['spec']['template']['spec']


def env_of(container):
    return dict((e['name'], e['value']) for e in container['env'])


def writable_mounts(spec, container):
    """{mountPath: volume} of the container's writable mounts."""
    volumes = dict((v['name'], v) for v in spec['volumes'])
    return dict((m['mountPath'], volumes[m['name']]) for m in container['volumeMounts'] if not m.get('readOnly'))


# ------------------------------------------------------------------------------------------------ media
def test_ephemeral_media_is_a_writable_empty_dir_in_web_and_sidekiq():
    """config_media_ephemeral with the default read-only root: web and sidekiq (both write media) get an emptyDir at
    public/system; streaming and the Jobs do not write media."""
    result = build(make_model(config_media_ephemeral=True))
    assert result['web'][0]['spec']['template']['spec']['containers'][0]['securityContext'][
        'readOnlyRootFilesystem'] is True
    seen = set()
    for component, spec in workloads(result):
        mounts = writable_mounts(spec, spec['containers'][0])
        if component in ('web', 'sidekiq'):
            assert 'emptyDir' in mounts.get(MEDIA, {}), (component, sorted(mounts))
            seen.add(component)
        else:
            assert MEDIA not in mounts, component
    assert seen == {'web', 'sidekiq'}


def test_media_claim_wins_and_object_storage_needs_no_volume():
    result = build(make_model(config_media_ephemeral=True, config_media_volume_claim='uploads'))
    spec = result['web'][0]['spec']['template']['spec']
    assert writable_mounts(spec, spec['containers'][0])[MEDIA]['persistentVolumeClaim'] == {'claimName': 'uploads'}
    model = make_model(config_media_ephemeral=True)
    model['env']['rails']['config']['S3_ENABLED'] = 'true'
    spec = build(model)['web'][0]['spec']['template']['spec']
    assert MEDIA not in writable_mounts(spec, spec['containers'][0])


# ------------------------------------------------------------------------------------------------ bootsnap
def test_rails_tmp_is_seeded_with_the_image_cache():
    """Every Rails pod copies the image's tmp/ (tmp/cache/bootsnap) into its rails-tmp emptyDir before the app starts,
    and tmp/ stays writable (the Sidekiq ready file, pids)."""
    result = build(make_model())
    rails_pods = 0
    for component, spec in workloads(result):
        main = spec['containers'][0]
        if component == 'streaming':
            assert 'initContainers' not in spec
            continue
        rails_pods += 1
        assert writable_mounts(spec, main)[RAILS_TMP] == {'name': 'rails-tmp', 'emptyDir': {}}
        (seed,) = spec['initContainers']
        assert seed['image'] == main['image'] and seed['securityContext'] == main['securityContext']
        (mount,) = seed['volumeMounts']
        assert mount['name'] == 'rails-tmp' and not mount.get('readOnly') and mount['mountPath'] != RAILS_TMP
        # The image's own tmp/ (not hidden in the init container) is copied, with its content, into the volume.
        assert seed['command'] == ['cp', '-R', RAILS_TMP + '/.', mount['mountPath'] + '/']
    assert rails_pods == 4
    # An API server rejection of the init container names the variable behind it.
    field = 'spec.template.spec.initContainers[0].resources.limits.memory'
    assert origin_of(result.origins, 'Deployment', 'masto-web', field) == 'web_resources'
    assert origin_of(result.origins, 'Deployment', 'masto-sidekiq-all', field) == 'sidekiq_workers'
    assert origin_of(result.origins, 'Job', 'masto-migrate-pre-v4-6-5', field) == 'migrations_resources'


# ------------------------------------------------------------------------------------------------ probes
def test_web_liveness_on_tcp_readiness_on_health():
    container = build(make_model())['web'][0]['spec']['template']['spec']['containers'][0]
    assert container['livenessProbe']['tcpSocket'] == {'port': 'http'}
    assert 'httpGet' not in container['livenessProbe']
    assert container['readinessProbe']['httpGet'] == {'path': '/health', 'port': 'http'}
    assert container['startupProbe']['httpGet'] == {'path': '/health', 'port': 'http'}


# ------------------------------------------------------------------------------------------------ streaming TLS
@pytest.mark.parametrize('rails, streaming', [
    ('disable', 'disable'), ('allow', 'disable'), ('prefer', 'verify-full'), ('require', 'verify-full'),
    ('verify-ca', 'verify-full'), ('verify-full', 'verify-full'), (None, 'verify-full')])
def test_streaming_sslmode_follows_rails(rails, streaming):
    model = make_model()
    if rails:
        model['env']['rails']['config']['DB_SSLMODE'] = rails
    container = build(model)['streaming'][0]['spec']['template']['spec']['containers'][0]
    assert env_of(container)['DB_SSLMODE'] == streaming


def test_streaming_sslmode_set_on_purpose_wins():
    model = make_model(streaming_db_sslmode='no-verify')
    model['env']['rails']['config']['DB_SSLMODE'] = 'disable'
    container = build(model)['streaming'][0]['spec']['template']['spec']['containers'][0]
    assert env_of(container)['DB_SSLMODE'] == 'no-verify'


# ------------------------------------------------------------------------------------------------ ES CA
def test_es_ca_is_mounted_and_named_by_es_ca_file():
    model = make_model(config_ca_mount_dir='/etc/ca')
    model['es_ca_pem'] = ES_CA
    result = build(model)
    secret = [o for o in result['config'] if o['kind'] == 'Secret' and o['metadata']['name'] == 'masto-db-ca'][0]
    data = dict((k, base64.b64decode(v).decode()) for k, v in secret['data'].items())
    assert data['es-ca.crt'] == ES_CA and data['ca.crt'] == CA
    for component, spec in workloads(result):
        container = spec['containers'][0]
        env = env_of(container)
        mounts = dict((m['mountPath'], m['name']) for m in container['volumeMounts'])
        assert mounts['/etc/ca'] == 'db-ca'
        if component == 'streaming':
            assert 'ES_CA_FILE' not in env
        else:
            assert env['ES_CA_FILE'] == '/etc/ca/es-ca.crt'
    # A changed CA restarts the pods (the annotation carries it).
    other = make_model(config_ca_mount_dir='/etc/ca')
    other['es_ca_pem'] = ES_CA.replace('MIIBes', 'MIIBet')
    key = 'fediops.mastodon/config-checksum'
    assert build(other)['web'][0]['spec']['template']['metadata']['annotations'][key] != \
        result['web'][0]['spec']['template']['metadata']['annotations'][key]


def test_es_ca_alone_still_mounts_the_ca_secret():
    model = make_model()
    model['ca_pem'] = ''
    model['es_ca_pem'] = ES_CA
    result = build(model)
    assert any(o['kind'] == 'Secret' and o['metadata']['name'] == 'masto-db-ca' for o in result['config'])
    env = env_of(result['sidekiq'][0]['spec']['template']['spec']['containers'][0])
    assert env['ES_CA_FILE'].endswith('/es-ca.crt') and 'PGSSLROOTCERT' not in env
