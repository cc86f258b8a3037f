# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Mastodon's environment for the version, and the model handed to the manifest builders.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards import KEPT_KEYS
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.endpoints import base_env
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError


def image_ref(repository, version):
    return '%s@%s' % (repository, version.split('@', 1)[1]) if '@' in version else '%s:%s' % (repository, version)


def streaming_image_ref(v, version):
    """The streaming image: another image than web's, so the digest of config_mastodon_version is not its own. Pinned
    by config_streaming_image_digest when given, else by the version's tag alone."""
    repository = v['config_streaming_image_repository']
    if v['config_streaming_image_digest']:
        return '%s@%s' % (repository, v['config_streaming_image_digest'])
    return '%s:%s' % (repository, version.split('@', 1)[0])


def build_model(v, groups, endpoints, env, kept, version):
    """The model of docs/dev/ARCHITECTURE.md section 6."""
    rails = mconfig.component_env(env, mconfig.RAILS_COMPONENT, version)
    streaming = mconfig.component_env(env, mconfig.STREAMING_COMPONENT, version)
    envs, checksums = {}, {}
    for kind, values in (('rails', rails), ('streaming', streaming)):
        secret, config = mconfig.split_env(values)
        envs[kind] = {'config': config, 'secret': secret}
        checksums[kind] = mconfig.checksum(mconfig.render(values))
    db = endpoints['db']
    labels = {'app.kubernetes.io/name': 'mastodon', 'app.kubernetes.io/instance': v['config_name'],
              'app.kubernetes.io/part-of': 'mastodon', 'app.kubernetes.io/managed-by': 'fediops.mastodon'}
    labels.update(v['config_labels'])
    return {
        'vars': v, 'name': v['config_name'], 'namespace': v['config_namespace'], 'version': version,
        'image': image_ref(v['config_image_repository'], version),
        'streaming_image': streaming_image_ref(v, version),
        'labels': labels, 'web_domain': v['config_web_domain'] or v['config_local_domain'],
        'streaming_host': v['config_streaming_host'], 'env': envs, 'checksums': checksums,
        'ca_pem': endpoints['ca_pem'] or '', 'redis_ca_pem': v['config_redis_ca_pem'],
        'es_ca_pem': endpoints.get('es_ca_pem') or '',
        'kept_secrets': dict((k, kept[k]) for k in KEPT_KEYS if kept.get(k)),
        'db_direct': {'DB_HOST': db['direct_host'], 'DB_PORT': str(db['direct_port']), 'DB_NAME': db['direct_name'],
                      'DB_USER': db['direct_user'], 'DB_PASS': db['direct_password'] or ''},
        'sidekiq_groups': groups,
    }


def environment(v, endpoints, kept_known, version):
    """(env with kept secrets, generated keys, warnings); PlanError naming each bad key of config_env."""
    env, errors = mconfig.normalise(base_env(v, endpoints), v['config_extra_env'])
    if endpoints['ca_pem']:
        env.setdefault('PGSSLROOTCERT', v['config_ca_mount_dir'].rstrip('/') + '/ca.crt')
    known = dict(kept_known)
    known.update(dict((k, val) for k, val in env.items() if k in mconfig.GENERATED and val))
    secrets, generated = mconfig.fill_secrets(known, v['config_generate_secrets'])
    env.update(secrets)
    more, warnings = mconfig.validate(env, endpoints['db']['pgbouncer'], version=version)  # version warnings included
    errors += more
    if errors:
        raise PlanError([ConfigError('config_env', str(e)) for e in errors], "Mastodon's environment is invalid")
    return env, generated, warnings


def dotenv_text(env, ca_dest):
    """.env.production for the hosts of config_files_hosts (PGSSLROOTCERT at the file's path there)."""
    values = dict((k, val) for k, val in env.items() if k != 'NODE_EXTRA_CA_CERTS')
    if 'PGSSLROOTCERT' in values:
        values['PGSSLROOTCERT'] = ca_dest
    return mconfig.render(values)
