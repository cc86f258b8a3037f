# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The guards of one-way doors checked by the plan before any write: the kept secrets and LOCAL_DOMAIN.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import base64
import datetime

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

KEPT_KEYS = ('SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY',
             'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY')


def kept_secrets(v, state):
    """(known kept secrets, backup to keep or None): the KEPT-SECRETS GUARD (issue 17, finding 1).

    The instance exists (its env Secret, its ConfigMap, its web Deployment or its ApplySet marker) but the Secret
    <name>-generated-secrets is missing: refuse, unless the operator restores them (from the env Secret with
    config_restore_kept_secrets_from_env, or from a backup through config_secrets) or rotates them explicitly."""
    name = v['config_name']
    given = dict((k, mconfig.to_text(k, val)) for k, val in v['config_secrets'].items() if k in KEPT_KEYS and val)
    kept = dict((k, val) for k, val in state.get('kept', {}).items() if k in KEPT_KEYS and val)
    if v['config_rotate_kept_secrets']:
        backup = dict(kept) if kept else None
        return given, backup
    if state.get('kept_exists'):
        kept.update(given)
        return kept, None
    if not state.get('instance'):
        return given, None  # a first install: generated below
    if v['config_restore_kept_secrets_from_env']:
        restored = dict((k, val) for k, val in state.get('env_secret', {}).items() if k in KEPT_KEYS and val)
        missing = [k for k in KEPT_KEYS if k not in restored and k not in given]
        if missing:
            raise PlanError([ConfigError('config_restore_kept_secrets_from_env', 'the Secret %s-env lacks %s: restore '
                                         'them from a backup through config_secrets' % (name, ', '.join(missing)))],
                            'the kept secrets cannot be restored')
        restored.update(given)
        return restored, None
    missing = [k for k in KEPT_KEYS if k not in given]
    if not missing:
        return given, None
    reason = ('the instance exists (%s) but the Secret %s-generated-secrets, which keeps %s, is missing in namespace '
              '%s. Generating new ones would make encrypted columns unreadable, break every web-push subscription and '
              'log every user out. Restore them: set config_restore_kept_secrets_from_env: true to copy them back from '
              'the Secret %s-env that the running pods read, or give them in config_secrets (from a backup). Only to '
              'replace them on purpose: config_rotate_kept_secrets: true.'
              % (', '.join(state['instance']), name, ', '.join(missing), v['config_namespace'], name))
    raise PlanError([ConfigError('config_restore_kept_secrets_from_env', reason)], 'the kept secrets are missing')


def local_domain_guard(v, state):
    current = ((state.get('env_configmap') or {}).get('data') or {}).get('LOCAL_DOMAIN')
    if current is None:
        current = state.get('env_secret', {}).get('LOCAL_DOMAIN')
    if current and current != v['config_local_domain'] and not v['config_allow_local_domain_change']:
        raise PlanError([ConfigError('config_local_domain', (
            'the instance in namespace %s runs with LOCAL_DOMAIN %s; changing it breaks federation irreversibly '
            '(remote servers know every account by its old domain). Set config_allow_local_domain_change: true only '
            'for an instance without federated data.') % (v['config_namespace'], current))],
            'LOCAL_DOMAIN would change')


def backup_secret(name, namespace, labels, data):
    """The kept secrets being replaced (config_rotate_kept_secrets), kept out of every ApplySet so no prune
    removes them."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
            'metadata': {'name': name + '-generated-secrets-previous', 'namespace': namespace, 'labels': dict(labels),
                         'annotations': {'fediops.mastodon/replaced-at': stamp}},
            'data': dict((k, base64.b64encode(val.encode('utf-8')).decode('ascii')) for k, val in sorted(data.items()))}
