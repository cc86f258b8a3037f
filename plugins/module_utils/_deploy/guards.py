# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The guards of one-way doors checked by the plan before any write: the kept secrets and LOCAL_DOMAIN.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import base64
import datetime
import hashlib

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

KEPT_KEYS = ('SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY',
             'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY')


# The database's keys (its identity, _migrations' docstring): new ones for an existing database are refused by
# the pre-deployment Job; the ActiveRecord encryption keys decrypt its encrypted columns (Mastodon 4.7: every local
# account's signing key, app/models/keypair.rb:25).
ENCRYPTION_KEYS = ('ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT',
                   'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY')
IDENTITY_KEYS = ('SECRET_KEY_BASE',) + ENCRYPTION_KEYS
# What config_rotate_kept_secrets may replace (true: all of them); the encryption keys only through
# config_rotate_encryption_keys_destroying_encrypted_data.
ROTATABLE = ('SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY')
VAPID = ('VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY')
ROTATE_ENCRYPTION = 'config_rotate_encryption_keys_destroying_encrypted_data'
# Annotations of the Secret <name>-generated-secrets (the deploy's bookkeeping, no secret in them).
GENERATION = 'fediops.mastodon/generation'            # 1, 2, ...: each rotation keeps the replaced one
ROTATION_REQUEST = 'fediops.mastodon/rotation-request'  # fingerprint of the rotation done, while it is still asked
ROTATED_AT = 'fediops.mastodon/rotated-at'
ENCRYPTION_REPLACED = 'fediops.mastodon/encryption-keys-replaced'  # once set, stays: old rows stay unreadable
DESTROYS = ('every value encrypted with them becomes unreadable: on Mastodon 4.7 the federation signing key of every '
            'local account (keypairs.private_key, app/models/keypair.rb:25), and the two-factor secrets of the users '
            'who enabled it; remote servers then reject what the accounts sign')
_TRUE = ('true', 'yes', 'on', '1')
_FALSE = ('false', 'no', 'off', '0', '')


def _flag(value):
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return value


def rotation_request(v):
    """The kept secrets the operator asks to replace: (names, [ConfigError])."""
    raw, errors, names = _flag(v.get('config_rotate_kept_secrets')), [], []
    if raw is True:
        names = list(ROTATABLE)
    elif raw is None or raw is False or raw == []:
        names = []
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            if item in ENCRYPTION_KEYS:
                errors.append(ConfigError('config_rotate_kept_secrets', 'item %d: %s is an ActiveRecord encryption key: '
                                          'replacing it destroys data (%s); only %s: true replaces the encryption keys'
                                          % (index, item, DESTROYS, ROTATE_ENCRYPTION)))
            elif item in ROTATABLE:
                names += list(VAPID) if item in VAPID else [item]  # the VAPID pair goes together
            else:
                errors.append(ConfigError('config_rotate_kept_secrets', 'item %d: %s is not a kept secret (one of %s)'
                                          % (index, item if isinstance(item, str) and len(item) < 80 else 'the value',
                                             ', '.join(ROTATABLE))))
    else:
        errors.append(ConfigError('config_rotate_kept_secrets', 'must be true, false or a list of the kept secrets to '
                                  'replace (%s)' % ', '.join(ROTATABLE)))
    if _flag(v.get(ROTATE_ENCRYPTION)) is True:
        names += list(ENCRYPTION_KEYS)
    return sorted(set(names)), errors


def request_fingerprint(names):
    return hashlib.sha256(','.join(sorted(names)).encode('utf-8')).hexdigest()[:16]


def kept_plan(v, state, now=None):
    """What happens to the kept secrets in this deploy: the KEPT-SECRETS GUARD.

    {'known': the values to keep, 'backup': the replaced generation to keep (or None), 'backup_name',
     'rotated': names replaced now, 'annotations': of the kept Secret, 'encryption_keys_replaced': bool,
     'warnings': [...]}; PlanError naming the variable, before any write, when

    * the instance exists (its env Secret, its ConfigMap, its web Deployment or its ApplySet marker) but the Secret
      <name>-generated-secrets is missing, unless restored (config_restore_kept_secrets_from_env, or config_secrets
      from a backup);
    * config_secrets gives a value that differs from the kept one, unless that secret is being rotated (a silent
      overwrite would leave the old value nowhere);
    * config_rotate_kept_secrets names an encryption key or a name that is not a kept secret.

    A rotation acts once: the fingerprint of the request is recorded on the kept Secret, and a re-run with the same
    request still in the variables does not rotate again (a warning says so); a run without it clears the record.
    Every replaced generation is kept in <name>-generated-secrets-previous-<generation>."""
    name, namespace = v['config_name'], v['config_namespace']
    names, errors = rotation_request(v)
    given = dict((k, mconfig.to_text(k, val)) for k, val in v['config_secrets'].items() if k in KEPT_KEYS and val)
    kept = dict((k, val) for k, val in state.get('kept', {}).items() if k in KEPT_KEYS and val)
    old = dict(state.get('kept_annotations') or {})
    generation = int(old.get(GENERATION) or 1) if str(old.get(GENERATION) or '1').isdigit() else 1
    annotations = {GENERATION: str(generation)}
    if old.get(ENCRYPTION_REPLACED):
        annotations[ENCRYPTION_REPLACED] = old[ENCRYPTION_REPLACED]
    out = {'backup': None, 'backup_name': None, 'rotated': [], 'warnings': [], 'annotations': annotations}
    fingerprint = request_fingerprint(names) if names else None
    if names and state.get('kept_exists') and old.get(ROTATION_REQUEST) == fingerprint:
        out['warnings'].append(
            'config_rotate_kept_secrets/%s: the rotation of %s was done at %s (recorded on the Secret '
            '%s-generated-secrets) and is not repeated while the request stays in the variables: remove it now; to '
            'rotate again, run once without it' % (ROTATE_ENCRYPTION, ', '.join(names), old.get(ROTATED_AT, 'an earlier run'),
                                                   name))
        annotations[ROTATION_REQUEST] = fingerprint
        annotations[ROTATED_AT] = old.get(ROTATED_AT, '')
        names = []
    elif names and state.get('kept_exists'):
        stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime('%Y-%m-%dT%H:%M:%SZ')
        out['rotated'] = names
        out['backup'] = dict(kept)
        out['backup_name'] = '%s-generated-secrets-previous-%d' % (name, generation)
        annotations.update({GENERATION: str(generation + 1), ROTATION_REQUEST: fingerprint, ROTATED_AT: stamp})
        if set(ENCRYPTION_KEYS) & set(names):
            annotations[ENCRYPTION_REPLACED] = stamp
            out['warnings'].append('%s: the ActiveRecord encryption keys are replaced: %s. The old keys are kept in the '
                                   'Secret %s.' % (ROTATE_ENCRYPTION, DESTROYS, out['backup_name']))
    for key in sorted(given):
        if key in kept and kept[key] != given[key] and key not in names:
            how = (ROTATE_ENCRYPTION + ': true' if key in ENCRYPTION_KEYS
                   else 'config_rotate_kept_secrets: [%s]' % key)
            errors.append(ConfigError('config_secrets', '%s differs from the value kept in the Secret '
                                      '%s-generated-secrets (namespace %s); replacing it silently would leave the kept '
                                      'value nowhere. Remove %s from config_secrets, or replace it on purpose with %s '
                                      '(the old value is then kept in %s-generated-secrets-previous-<n>)'
                                      % (key, name, namespace, key, how, name)))
    if errors:
        raise PlanError(errors, 'the kept secrets would change')
    out['requested'] = names
    out['encryption_keys_replaced'] = bool(annotations.get(ENCRYPTION_REPLACED))
    if state.get('kept_exists'):
        known = dict((k, val) for k, val in kept.items() if k not in names)
        known.update(given)
        out['known'] = known
        return out
    if not state.get('instance'):
        out['known'] = given  # a first install: generated below
        return out
    if v['config_restore_kept_secrets_from_env']:
        restored = dict((k, val) for k, val in state.get('env_secret', {}).items() if k in KEPT_KEYS and val)
        missing = [k for k in KEPT_KEYS if k not in restored and k not in given]
        if missing:
            raise PlanError([ConfigError('config_restore_kept_secrets_from_env', 'the Secret %s-env lacks %s: restore '
                                         'them from a backup through config_secrets' % (name, ', '.join(missing)))],
                            'the kept secrets cannot be restored')
        restored.update(given)
        out['known'] = restored
        return out
    missing = [k for k in KEPT_KEYS if k not in given and k not in names]
    if not missing:
        out['known'] = given
        return out
    reason = ('the instance exists (%s) but the Secret %s-generated-secrets, which keeps %s, is missing in namespace '
              '%s. Generating new ones would make encrypted columns unreadable, break every web-push subscription and '
              'log every user out. Restore them: set config_restore_kept_secrets_from_env: true to copy them back from '
              'the Secret %s-env that the running pods read, or give them in config_secrets (from a backup). Only to '
              'replace them on purpose: config_rotate_kept_secrets: true (and, destroying the encrypted data, %s: true).'
              % (', '.join(state['instance']), name, ', '.join(missing), namespace, name, ROTATE_ENCRYPTION))
    raise PlanError([ConfigError('config_restore_kept_secrets_from_env', reason)], 'the kept secrets are missing')


def fresh_secrets(generated, staged, known, requested):
    """Whether the database's keys (IDENTITY_KEYS) were made in this deploy (generated now, or staged for the files
    hosts before the first apply) and not on request: the signal to the pre-deployment Job (_migrations), which
    then refuses a database that already holds a schema (a changed config_name/config_namespace or a deleted
    namespace finds no kept secrets, and the old instance's database would get new keys)."""
    made = (set(generated) | (set(staged or {}) - set(known))) & set(IDENTITY_KEYS)
    return bool(made - set(requested))


def first_install_job(record, version):
    """Whether the cluster's pre-deployment Job of `version` is the first install's, made with the new-keys signal:
    the deploy record says it loaded the schema (`schema_loaded`) or still runs (`running_job` ...-new-keys). A
    re-run renders it as it was, so that it stays unchanged (a completed Job) or is re-attached to (one running),
    rather than becoming a second Job of the phase, which would refuse the database the first one filled. Only the
    record can say: an instance adopted under this collection (its database and secrets given) has no new-keys Job."""
    current = (record or {}).get('current') or {}
    if current.get('version') != version:
        return False
    return bool(current.get('schema_loaded')) or (current.get('migrations_running') == 'pre'
                                                  and str(current.get('running_job') or '').endswith('-new-keys'))


def kept_secrets(v, state):
    """(known kept secrets, backup to keep or None): kept_plan's two main answers."""
    plan = kept_plan(v, state)
    return plan['known'], plan['backup']


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


def backup_secret(name, namespace, labels, data, backup_name=None):
    """A replaced generation of the kept secrets (<name>-generated-secrets-previous-<generation>), kept out of every
    ApplySet so no prune removes it, and never overwritten (each rotation has its own generation)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
            'metadata': {'name': backup_name or name + '-generated-secrets-previous-1', 'namespace': namespace,
                         'labels': dict(labels), 'annotations': {'fediops.mastodon/replaced-at': stamp}},
            'data': dict((k, base64.b64encode(val.encode('utf-8')).decode('ascii')) for k, val in sorted(data.items()))}


def reference_problems(references, namespace):
    """(errors, warnings) of the objects the deploy refers to without creating them (state.read_references).

    A missing uploads claim is refused: the web and sidekiq pods would stay Pending, and nothing in the deploy
    creates it. A missing pull Secret or IngressClass is a warning only: they are often created by other tools
    after the namespace (a registry credential sync, the ingress controller's installation)."""
    errors, warnings = [], []
    for (variable, kind, name), present in sorted(references.items()):
        if present is not False:
            continue
        if kind == 'PersistentVolumeClaim':
            errors.append(ConfigError(variable, 'PersistentVolumeClaim %s does not exist in namespace %s: the web and '
                                                'sidekiq pods would stay Pending until it does; create it first (the '
                                                'deploy does not)' % (name, namespace)))
        elif kind == 'Secret':
            warnings.append('%s: the Secret %s does not exist in namespace %s (yet): the pods cannot pull a private '
                            'image until it does; the deploy goes on because a registry credential tool may create it '
                            'later' % (variable, name, namespace))
        else:
            warnings.append('%s: the IngressClass %s does not exist in the cluster (yet): no controller will serve the '
                            'Ingress until it does; the deploy goes on because installing the ingress controller '
                            'creates it' % (variable, name))
    return errors, warnings
