#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: mastodon_env
short_description: Validate Mastodon's configuration, generate its secrets once and write an exact C(.env.production)
version_added: 0.1.0
description:
  - Validates Mastodon's settings for the release in O(mastodon_version) (types, allowed values, URL schemes, cross-key
    rules) before anything is written. Supported are the stable lines 4.5, 4.6 and 4.7; every key that release reads is
    accepted, and keys Mastodon refuses or no longer reads are rejected naming the key, the version and
    what to do instead (for example C(REDIS_NAMESPACE), C(STATSD_ADDR), C(STREAMING_CLUSTER_NUM), and
    C(SKIP_POST_DEPLOYMENT_MIGRATIONS), which only the migration Jobs may set).
  - Generates missing secrets (C(SECRET_KEY_BASE), the VAPID key pair, C(ACTIVE_RECORD_ENCRYPTION_*), optionally
    C(OTP_SECRET)) and never regenerates one that exists in O(existing_secrets) or in the O(dest) file.
  - Renders a C(.env.production) that Ruby dotenv and node dotenv read back byte-for-byte; a value that cannot be
    written that way is rejected, naming its key.
  - Returns the environment split into RV(secret_env) and RV(config_env) for a Kubernetes Secret and ConfigMap, and a
    RV(checksum) to annotate pod templates with.
  - Tasks that register the result should set C(no_log=true), because Ansible cannot hide single return values, and
    RV(secrets) and RV(secret_env) hold secret values. The module itself never puts a secret value into a message,
    a warning, the diff or the logged invocation.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - ansible.builtin.files
  - fediops.mastodon.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Secret values are shown as C(********).
  platform:
    support: full
    platforms: posix
options:
  env:
    description:
      - Mastodon settings, C(KEY=value) pairs. Booleans and numbers are written as Mastodon reads them (V(true), V(5)).
      - An unknown key is an error with a suggestion; keys set on the process (C(RAILS_ENV), C(NODE_ENV), C(PORT),
        C(BIND), C(SOCKET)) are refused.
      - C(LOG_LEVEL) (the streaming server) takes pino's levels V(fatal), V(error), V(warn), V(info), V(debug),
        V(trace), V(silent); C(DEFAULT_LOCALE) one of the locales of that Mastodon release.
      - Besides the keys Mastodon reads, four are read by others and accepted - C(SECRET_KEY_BASE) (Rails),
        C(PGSSLROOTCERT) (libpq), C(NODE_EXTRA_CA_CERTS) (node, streaming), C(OTP_SECRET) (a post-deployment
        migration of databases from before 4.3).
      - Secrets may be given here too; they take precedence over generated ones.
    type: dict
    default: {}
  extra_env:
    description:
      - Variables outside the schema (for example a newer Mastodon setting); only quoting is checked, and the keys that
        Mastodon refuses (see O(env)) are rejected here too.
    type: dict
    default: {}
  existing_secrets:
    description:
      - Secrets known from elsewhere, typically the data of the cluster's Secret. They are kept, never regenerated.
      - Only the generated keys (C(SECRET_KEY_BASE), C(OTP_SECRET), C(VAPID_*), C(ACTIVE_RECORD_ENCRYPTION_*)) are used.
    type: dict
    default: {}
  generate_secrets:
    description: Generate the required secrets that are missing. With V(false) a missing one is an error.
    type: bool
    default: true
  generate_otp_secret:
    description: Also generate the legacy C(OTP_SECRET) (only needed by Mastodon before 4.3 or for its migrations).
    type: bool
    default: false
  pgbouncer:
    description:
      - Whether Mastodon reaches Postgres through a PgBouncer pool in transaction mode; then C(PREPARED_STATEMENTS) must
        be V(false).
      - When unset, a database port of 25061 (DigitalOcean's pool port) counts as PgBouncer.
    type: bool
  mastodon_version:
    description:
      - The Mastodon release the settings are for, V(vX.Y.Z) or V(vX.Y.Z@sha256:<digest>), of the line 4.5, 4.6 or 4.7.
      - Any patch release of a supported line is accepted; one older than the newest this collection knows gets a
        warning naming it.
      - Other lines are refused unless O(allow_unsupported_version=true).
    type: str
    default: v4.7.6
  allow_unsupported_version:
    description:
      - Accept a O(mastodon_version) outside the supported lines (any image tag); its settings are then checked against
        the nearest supported line, with a warning.
    type: bool
    default: false
  components:
    description:
      - The components that read this file. A setting that none of them reads gives a warning.
    type: list
    elements: str
    choices: [web, streaming, sidekiq]
  dest:
    description:
      - Path of the C(.env.production) to write. Without it nothing is written (validation, secrets and returns only).
      - When the file exists, its secrets are read back and kept.
    type: path
  mode:
    description: Permissions of O(dest).
    type: raw
    default: '0600'
  backup:
    description: Keep a timestamped copy of O(dest) before changing it.
    type: bool
    default: false
notes:
  - Secret values are read back only from the generated keys of an existing O(dest); the file is otherwise rewritten
    from O(env) and O(extra_env).
  - A value that holds a URL with credentials (C(user:password@)) counts as secret whatever its key, so it goes to
    RV(secret_env), even when the password holds C(#), C(?), C(/) or C(@).
seealso:
  - name: Configuring your environment (Mastodon documentation)
    description: The settings this module validates.
    link: https://docs.joinmastodon.org/admin/config/
requirements:
  - cryptography (to generate and check the VAPID key pair)
'''

EXAMPLES = r'''
- name: Write .env.production, keeping the secrets of the cluster's Secret
  fediops.mastodon.mastodon_env:
    dest: /srv/mastodon/.env.production
    existing_secrets: "{{ mastodon_cluster_secret_data | default({}) }}"
    pgbouncer: true
    env:
      LOCAL_DOMAIN: example.social
      STREAMING_API_BASE_URL: wss://streaming.example.social
      DB_HOST: db.example.internal
      DB_PORT: 25061
      DB_NAME: mastodon-pool
      DB_USER: mastodon
      DB_PASS: "{{ vault_db_password }}"
      DB_SSLMODE: verify-full
      PREPARED_STATEMENTS: false
      REDIS_URL: "rediss://default:{{ vault_redis_password }}@redis.example.internal:25061"
      REDIS_DRIVER: ruby
  register: mastodon_env
  no_log: true

- name: Only validate and split for Kubernetes (no file)
  fediops.mastodon.mastodon_env:
    env: "{{ mastodon_settings }}"
    existing_secrets: "{{ mastodon_cluster_secret_data | default({}) }}"
  register: mastodon_env
  no_log: true
'''

RETURN = r'''
secrets:
  description:
    - The generated-once secrets (kept or new). Secret values; register with C(no_log=true).
  returned: success
  type: dict
  sample: {SECRET_KEY_BASE: '********', VAPID_PRIVATE_KEY: '********', VAPID_PUBLIC_KEY: '********'}
generated:
  description: Names of the secrets generated by this run (empty on a re-run).
  returned: success
  type: list
  elements: str
  sample: [SECRET_KEY_BASE, VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY]
secret_env:
  description:
    - The settings for a Kubernetes Secret - the secrets, passwords, keys and any value with a URL that embeds
      credentials.
      Secret values; register with C(no_log=true).
  returned: success
  type: dict
  sample: {DB_PASS: '********'}
config_env:
  description: The non-secret settings, for a ConfigMap.
  returned: success
  type: dict
  sample: {LOCAL_DOMAIN: example.social, DB_SSLMODE: verify-full}
checksum:
  description: SHA-256 of the rendered file; put it in a pod-template annotation so that a change rolls the pods.
  returned: success
  type: str
  sample: 3f1c0d...
dest:
  description: The path written, when O(dest) was given.
  returned: when O(dest) is set
  type: str
  sample: /srv/mastodon/.env.production
backup_file:
  description: The backup copy made by O(backup).
  returned: when a backup was made
  type: str
  sample: /srv/mastodon/.env.production.1234.2025-01-01@00:00:00~
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.fediops.mastodon.plugins.module_utils import _dotenv
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as config

try:
    import cryptography  # noqa: F401, pylint: disable=unused-import
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False


class MastodonEnv(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.secret_values = set()

    def fail(self, errors):
        msg = '; '.join(str(e) for e in errors)
        self.module.fail_json(msg='invalid Mastodon configuration: %s' % msg, errors=[str(e) for e in errors],
                              keys=[e.key for e in errors])

    def read_dest(self):
        dest = self.params['dest']
        if not dest or not os.path.exists(dest):
            return None, {}
        with open(dest, 'rb') as handle:
            raw = handle.read()
        try:
            text = raw.decode('utf-8')
            values = _dotenv.parse(text)
        except (UnicodeDecodeError, _dotenv.DotenvParseError) as exc:
            self.module.fail_json(msg='cannot read secrets back from %s: %s' % (dest, exc))
        self.remember(dict((k, v) for k, v in values.items() if config.is_secret(k, v)))
        return raw, values

    def remember(self, values):
        """Mask secret values in anything the module might print on failure."""
        new = set(v for v in values.values() if isinstance(v, str) and v)
        self.secret_values.update(new)
        self.module.no_log_values.update(new)

    def run(self):
        try:
            version = config.parse_version(self.params['mastodon_version'],
                                           allow_unsupported=self.params['allow_unsupported_version'])[0]
        except config.ConfigError as exc:
            reason = exc.reason.replace(config.OVERRIDE_VARIABLE, 'allow_unsupported_version')
            self.module.fail_json(msg='mastodon_version: %s' % reason)
        env, errors = config.normalise(self.params['env'], self.params['extra_env'])
        self.remember(dict((k, v) for k, v in env.items() if config.is_secret(k, v)))
        existing = dict((str(k), config.to_text(str(k), v)) for k, v in self.params['existing_secrets'].items()
                        if v is not None and str(k) in config.GENERATED)
        old_raw, old_values = self.read_dest()
        known = dict((k, v) for k, v in old_values.items() if k in config.GENERATED and v)
        known.update(existing)
        known.update(dict((k, v) for k, v in env.items() if k in config.GENERATED and v))
        if not HAS_CRYPTOGRAPHY and self.params['generate_secrets']:
            self.module.fail_json(msg=missing_required_lib('cryptography'))
        secrets, generated = config.fill_secrets(known, self.params['generate_secrets'],
                                                 self.params['generate_otp_secret'])
        self.remember(secrets)
        env.update(secrets)
        more_errors, warnings = config.validate(env, self.params['pgbouncer'], self.params['components'],
                                                version=version)
        errors += more_errors
        if errors:
            self.fail(sorted(errors, key=lambda e: e.key))
        for warning in warnings:
            self.module.warn(warning)

        text = config.render(env)
        secret_env, config_env = config.split_env(env)
        self.remember(secret_env)
        result = dict(changed=False, secrets=secrets, generated=generated, secret_env=secret_env,
                      config_env=config_env, checksum=config.checksum(text))
        if self.params['dest']:
            result.update(self.write(text, old_raw, old_values, set(secret_env)))
        self.exit(result)

    def write(self, text, old_raw, old_values, secret_keys):
        dest = self.params['dest']
        new_raw = text.encode('utf-8')
        result = dict(dest=dest, changed=old_raw != new_raw)
        if self.module._diff:
            old_secret_keys = set(k for k, v in old_values.items() if config.is_secret(k, v))
            before = old_raw.decode('utf-8', 'replace') if old_raw is not None else ''
            result['diff'] = dict(before_header=dest, after_header=dest,
                                  before=config.masked(before, old_secret_keys | secret_keys),
                                  after=config.masked(text, secret_keys))
        if result['changed'] and not self.module.check_mode:
            directory = os.path.dirname(os.path.abspath(dest))
            if not os.path.isdir(directory):
                self.module.fail_json(msg='directory of dest does not exist: %s' % directory)
            if self.params['backup'] and old_raw is not None:
                result['backup_file'] = self.module.backup_local(dest)
            fd, tmp = tempfile.mkstemp(prefix='.env.production.', dir=directory)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, 'wb') as handle:
                    handle.write(new_raw)
                self.module.atomic_move(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        if not self.module.check_mode or os.path.exists(dest):
            file_args = self.module.load_file_common_arguments(self.params, path=dest)
            result['changed'] = self.module.set_fs_attributes_if_different(file_args, result['changed'])
        return result

    def exit(self, result):
        # The invocation is logged with every secret value masked; the values are then released from
        # no_log_values so that the registered result carries them (tasks register it with no_log: true).
        masked_params = remove_values(self.params, self.module.no_log_values)
        result['invocation'] = dict(module_args=masked_params)
        returned = set()
        for data in (result['secrets'], result['secret_env']):
            returned.update(v for v in data.values() if v)
        self.module.no_log_values.difference_update(returned)
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            env=dict(type='dict', default={}),
            extra_env=dict(type='dict', default={}),
            existing_secrets=dict(type='dict', default={}, no_log=True),
            generate_secrets=dict(type='bool', default=True),
            generate_otp_secret=dict(type='bool', default=False),
            pgbouncer=dict(type='bool'),
            mastodon_version=dict(type='str', default=config.DEFAULT_VERSION),
            allow_unsupported_version=dict(type='bool', default=False),
            components=dict(type='list', elements='str', choices=['web', 'streaming', 'sidekiq']),
            dest=dict(type='path'),
            mode=dict(type='raw', default='0600'),
            backup=dict(type='bool', default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    MastodonEnv(module).run()


if __name__ == '__main__':
    main()
