# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rules between role variables (cross_checks), each refusal naming its variable.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import re

from urllib.parse import urlsplit

from ansible_collections.fediops.mastodon.plugins.module_utils import _manifests
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils import _backups
from ansible_collections.fediops.mastodon.plugins.module_utils import _x509
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import downtime
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import did_you_mean
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.variables import INT_TEXT
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

_DNS_LABEL = re.compile(r'\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z')
_NAME = re.compile(r'\A[a-z]([-a-z0-9]{0,28}[a-z0-9])?\Z')
# Kubernetes' resource.Quantity: a signed decimal number and one suffix (binary SI, decimal SI or an exponent).
_QUANTITY = re.compile(r'\A[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?\Z')
_DIGEST = re.compile(r'\Asha256:[0-9a-f]{64}\Z')
_INT_OR_PERCENT = re.compile(r'\A[0-9]+%?\Z')
_LABEL_KEY = re.compile(r'\A([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z')
_LABEL_VALUE = re.compile(r'\A(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?\Z')
TOLERATION_KEYS = ('key', 'operator', 'value', 'effect', 'tolerationSeconds')
RESOURCE_SECTIONS = ('requests', 'limits', 'claims')


def check_host(name, value, allow_empty=True):
    if not value and allow_empty:
        return
    if '://' in value or '/' in value:
        raise ConfigError(name, 'must be a host name without scheme or path (e.g. cdn.example.com, not '
                                'https://cdn.example.com/)')
    # The host-name rule of _mastodon_config, plus what Kubernetes requires of an Ingress host (these names
    # become Ingress hosts and LOCAL_DOMAIN): lower case, no final dot.
    if not mconfig.is_host_name(value) or value != value.lower() or value.endswith('.'):
        raise ConfigError(name, 'must be a DNS host name in lower case (letters, digits, - and .)')


def check_quantities(name, resources, where=''):
    """A container's resources: {requests, limits} of Kubernetes quantities; requests no larger than limits."""
    prefix = '%s: ' % where if where else ''
    if not isinstance(resources, dict):
        raise ConfigError(name, '%sresources must be a mapping with requests and limits' % prefix)
    for section, amounts in resources.items():
        if section not in RESOURCE_SECTIONS:
            raise ConfigError(name, '%sunknown key %s%s (known: requests, limits)'
                              % (prefix, section, did_you_mean(str(section), RESOURCE_SECTIONS)))
        if section == 'claims':
            continue
        if not isinstance(amounts, dict):
            raise ConfigError(name, '%s%s must be a mapping of resource name to quantity' % (prefix, section))
        for resource, amount in amounts.items():
            text = str(amount) if isinstance(amount, (int, float)) and not isinstance(amount, bool) else amount
            if not isinstance(text, str) or not _QUANTITY.match(text.strip()):
                raise ConfigError(name, '%s%s.%s is not a Kubernetes quantity (e.g. 250m, 0.5, 768Mi, 1Gi)'
                                  % (prefix, section, resource))
    requests, limits = resources.get('requests') or {}, resources.get('limits') or {}
    for resource in set(requests) & set(limits):
        if quantity_value(requests[resource]) > quantity_value(limits[resource]):
            raise ConfigError(name, '%srequests.%s is larger than limits.%s' % (prefix, resource, resource))


_SUFFIX = {'Ki': 2 ** 10, 'Mi': 2 ** 20, 'Gi': 2 ** 30, 'Ti': 2 ** 40, 'Pi': 2 ** 50, 'Ei': 2 ** 60, 'n': 1e-9,
           'u': 1e-6, 'm': 1e-3, '': 1, 'k': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12, 'P': 1e15, 'E': 1e18}


def quantity_value(amount):
    text = str(amount).strip()
    match = re.match(r'\A([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)\Z', text)
    number, suffix = float(match.group(1)), match.group(2)
    if suffix[:1] in ('e', 'E'):
        return number * 10 ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def check_strategy(name, strategy):
    if not isinstance(strategy, dict) or strategy.get('type') not in ('RollingUpdate', 'Recreate'):
        raise ConfigError(name, 'must be a mapping with type RollingUpdate or Recreate')
    for key in strategy:
        if key not in ('type', 'rollingUpdate'):
            raise ConfigError(name, 'unknown key %s%s' % (key, did_you_mean(str(key), ('type', 'rollingUpdate'))))
    rolling = strategy.get('rollingUpdate')
    if strategy['type'] == 'Recreate' and rolling is not None:
        raise ConfigError(name, 'rollingUpdate is only allowed with type RollingUpdate')
    if rolling is not None:
        if not isinstance(rolling, dict):
            raise ConfigError(name, 'rollingUpdate must be a mapping with maxSurge and maxUnavailable')
        for key, value in rolling.items():
            if key not in ('maxSurge', 'maxUnavailable'):
                raise ConfigError(name, 'rollingUpdate: unknown key %s%s' % (
                    key, did_you_mean(str(key), ('maxSurge', 'maxUnavailable'))))
            if isinstance(value, bool) or not (isinstance(value, int) and value >= 0 or
                                               isinstance(value, str) and _INT_OR_PERCENT.match(value)):
                raise ConfigError(name, 'rollingUpdate.%s must be an integer >= 0 or a percentage such as 25%%' % key)
        if rolling.get('maxSurge') in (0, '0', '0%') and rolling.get('maxUnavailable') in (0, '0', '0%'):
            raise ConfigError(name, 'rollingUpdate: maxSurge and maxUnavailable cannot both be 0')


def check_node_selector(name, selector, where=''):
    prefix = '%s: ' % where if where else ''
    for key, value in (selector or {}).items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise ConfigError(name, '%s%r is not a label key' % (prefix, key))
        if not isinstance(value, str):
            raise ConfigError(name, '%s%s must be a string (quote it: "%s")' % (
                prefix, key, str(value).lower() if isinstance(value, bool) else value))
        if not _LABEL_VALUE.match(value):
            raise ConfigError(name, '%s%s is not a label value' % (prefix, key))


def check_tolerations(name, tolerations, where=''):
    prefix = '%s: ' % where if where else ''
    for index, item in enumerate(tolerations or []):
        if not isinstance(item, dict):
            raise ConfigError(name, '%sitem %d must be a mapping' % (prefix, index))
        for key in item:
            if key not in TOLERATION_KEYS:
                raise ConfigError(name, '%sitem %d: unknown key %s%s' % (prefix, index, key,
                                                                         did_you_mean(str(key), TOLERATION_KEYS)))
        if item.get('operator', 'Equal') not in ('Equal', 'Exists'):
            raise ConfigError(name, '%sitem %d: operator must be Equal or Exists' % (prefix, index))
        if item.get('effect', '') not in ('', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'):
            raise ConfigError(name, '%sitem %d: effect must be NoSchedule, PreferNoSchedule or NoExecute' % (prefix, index))


_PEM_MARKER = re.compile(r'-----(BEGIN|END) ([A-Z0-9 ]{1,64})-----')


def pem_blocks(pem):
    """([(label, body)], text outside the blocks) of PEM text, in one pass over it (linear whatever it holds:
    the lazy `BEGIN (.*?) END` expression this replaces read to the end of the text from every BEGIN, quadratic
    for a value of many BEGIN lines). A BEGIN closes at the next END of the same label; an unmatched marker
    stays outside (and is refused as text outside the blocks)."""
    blocks, outside = [], []
    position, opened = 0, None  # opened: (label, end of its BEGIN marker, start of its BEGIN marker)
    for marker in _PEM_MARKER.finditer(pem):
        kind, label = marker.group(1), marker.group(2)
        if opened is None:
            if kind == 'BEGIN':
                outside.append(pem[position:marker.start()])
                opened = (label, marker.end(), marker.start())
        elif kind == 'END' and label == opened[0]:
            blocks.append((label, pem[opened[1]:marker.start()]))
            position, opened = marker.end(), None
    outside.append(pem[opened[2] if opened else position:])
    return blocks, ''.join(outside)


def check_given_ca(name, pem, now=None):
    """A CA given as PEM text: certificates only (a private key is refused and never echoed), each one a CA
    (basicConstraints CA:TRUE) inside its validity. Returns the normalised PEM bundle."""
    if 'PRIVATE KEY' in pem:
        raise ConfigError(name, 'contains a PRIVATE KEY block: give only the CA certificate (and rotate that key: '
                                'it has been in your variables)')
    blocks, outside = pem_blocks(pem)
    if not blocks:
        raise ConfigError(name, 'must be PEM text with at least one -----BEGIN CERTIFICATE----- block')
    if outside.strip():
        raise ConfigError(name, 'has text outside the PEM blocks')
    out = []
    for index, (label, body) in enumerate(blocks):
        what = '%s certificate %d' % (name, index + 1)
        if label != 'CERTIFICATE':
            raise ConfigError(name, 'block %d is a %s, not a CERTIFICATE' % (index + 1, label))
        text = '-----BEGIN CERTIFICATE-----%s-----END CERTIFICATE-----\n' % body
        try:
            cert = _x509.load_certificate(text.encode('ascii', 'replace'), what=what)
            _x509.check_ca_certificate(cert, now=now, what=what)
        except _x509.X509Error as exc:
            raise ConfigError(name, _without_pem(str(exc)))
        out.append(text)
    return ''.join(out)


def _without_pem(text):
    return re.sub(r'-----BEGIN.*', '(PEM text not shown)', text, flags=re.S)


def cross_checks(v, now=None):
    """Rules between the typed variables; returns (errors, sidekiq_groups)."""
    errors = []

    def check(func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            errors.append(exc)

    def rule(ok, name, reason):
        if not ok:
            errors.append(ConfigError(name, reason))

    rule(_NAME.match(v['config_name']), 'config_name', 'must be a DNS label of at most 30 characters starting with a letter')
    rule(_DNS_LABEL.match(v['config_namespace']), 'config_namespace', 'must be a DNS label (a-z, 0-9, -; 63 at most)')
    check(mconfig.parse_version, v['config_mastodon_version'], v['config_allow_unsupported_version'])
    rule(v['config_local_domain'], 'config_local_domain', 'is required (the domain of the user handles)')
    check(check_host, 'config_local_domain', v['config_local_domain'])
    check(check_host, 'config_web_domain', v['config_web_domain'])
    check(check_host, 'config_streaming_host', v['config_streaming_host'])
    check(check_host, 'config_cdn_host', v['config_cdn_host'])
    rule(v['config_ca_mount_dir'].startswith('/'), 'config_ca_mount_dir', 'must be an absolute path')
    if v['config_database_source'] == 'digitalocean':
        rule(v['config_do_database_cluster'], 'config_do_database_cluster',
             'is required with config_database_source=digitalocean (the name of the PostgreSQL cluster)')
    else:
        rule(v['config_db_host'], 'config_db_host', 'is required with config_database_source=explicit')
        check(check_host, 'config_db_host', v['config_db_host'].lower())
        for name in ('config_db_port', 'config_db_direct_port'):
            rule(0 < v[name] < 65536, name, 'must be a TCP port (1-65535)')
        if v['config_redis_url']:
            rule(urlsplit(v['config_redis_url']).scheme in ('redis', 'rediss', 'unix'), 'config_redis_url',
                 'must be a redis:// or rediss:// URL')
    if v['config_db_ca_pem']:
        check(check_given_ca, 'config_db_ca_pem', v['config_db_ca_pem'], now)
    errors.extend(connection_rules(v, now))
    for key, value in v['config_labels'].items():
        rule(isinstance(value, str) and _LABEL_KEY.match(str(key)) and _LABEL_VALUE.match(value), 'config_labels',
             '%s: label keys and values must be strings of letters, digits, -, _ and .' % key)
    for variable in ('config_env', 'config_extra_env'):
        for key, (owner, why, dummy) in sorted(mconfig.ROLE_OWNED_KEYS.items()):
            rule(key not in v[variable], variable, '%s: set %s instead (%s)' % (key, owner, why))
    for key in sorted(set(v['config_secrets']) - set(mconfig.GENERATED), key=str):
        rule(False, 'config_secrets', 'unknown key %s%s (known: %s)' % (
            key, did_you_mean(str(key), mconfig.GENERATED), ', '.join(mconfig.GENERATED)))
    db_pool = v['config_env'].get('DB_POOL')
    if db_pool is not None and INT_TEXT.match(str(db_pool).strip()):
        # config/database.yml: pool is DB_POOL when set, else MAX_THREADS; a smaller pool makes Puma's threads wait
        # for a connection (ActiveRecord::ConnectionTimeoutError). Sidekiq sets DB_POOL per group on its containers.
        rule(int(db_pool) >= v['web_max_threads'], 'config_env', 'DB_POOL (%s) is lower than web_max_threads (%d): '
             "Puma's threads would wait for database connections; remove it or raise it" % (db_pool, v['web_max_threads']))
    for variable in ('web_extra_env', 'streaming_extra_env', 'sidekiq_extra_env', 'migrations_extra_env'):
        for key in sorted(v[variable], key=str):
            owner, dummy, owner_role = mconfig.ROLE_OWNED_KEYS.get(key, (None, None, None))
            reason = (mconfig.FORBIDDEN.get(key) or mconfig.REJECTED.get(key) or mconfig.NOT_FOR_PRODUCTION.get(key) or
                      ('set %s instead' % owner if owner and owner_role in (None, variable.split('_', 1)[0]) else None))
            rule(reason is None, variable, '%s: %s' % (key, reason))
    # The same rules for both HTTP servers, each option named literally.
    for (replicas, resources, node_selector, tolerations, exposure, parent_refs, wait_timeout, pdb_enabled,
         pdb_min_available, hpa_enabled) in (
            ('web_replicas', 'web_resources', 'web_node_selector', 'web_tolerations', 'web_exposure',
             'web_gateway_parent_refs', 'web_wait_timeout', 'web_pdb_enabled', 'web_pdb_min_available',
             'web_hpa_enabled'),
            ('streaming_replicas', 'streaming_resources', 'streaming_node_selector', 'streaming_tolerations',
             'streaming_exposure', 'streaming_gateway_parent_refs', 'streaming_wait_timeout', 'streaming_pdb_enabled',
             'streaming_pdb_min_available', None)):
        rule(v[replicas] >= 0, replicas, 'must be >= 0')
        check(check_quantities, resources, v[resources])
        check(check_node_selector, node_selector, v[node_selector])
        check(check_tolerations, tolerations, v[tolerations])
        rule(v[exposure] != 'httproute' or v[parent_refs], parent_refs, 'is required with %s=httproute' % exposure)
        rule(v[wait_timeout] > 0, wait_timeout, 'must be > 0')
        pdb = v[pdb_min_available]
        rule(pdb >= 0, pdb_min_available, 'must be >= 0')
        fixed = not (hpa_enabled and v[hpa_enabled])  # with the autoscaler the replicas move: not checked here
        if v[pdb_enabled] and fixed and v[replicas] > 0:
            rule(pdb < v[replicas], pdb_min_available,
                 'must be lower than %s (%d): no pod could ever be evicted, so node drains (DOKS upgrades '
                 'included) would hang' % (replicas, v[replicas]))
    rule(v['web_concurrency'] >= 0, 'web_concurrency', 'must be >= 0')
    rule(v['web_max_threads'] >= 1, 'web_max_threads', 'must be >= 1')
    check(check_strategy, 'web_strategy', v['web_strategy'])
    if v['web_hpa_enabled']:
        rule(v['web_hpa_min_replicas'] >= 1, 'web_hpa_min_replicas', 'must be >= 1')
        rule(v['web_hpa_max_replicas'] >= v['web_hpa_min_replicas'], 'web_hpa_max_replicas',
             'must be >= web_hpa_min_replicas (%d)' % v['web_hpa_min_replicas'])
        rule(1 <= v['web_hpa_cpu_utilization'] <= 100, 'web_hpa_cpu_utilization', 'must be a percentage (1-100)')
    check(check_quantities, 'migrations_resources', v['migrations_resources'])
    check(check_node_selector, 'migrations_node_selector', v['migrations_node_selector'])
    check(check_tolerations, 'migrations_tolerations', v['migrations_tolerations'])
    rule(v['migrations_active_deadline_seconds'] >= 0, 'migrations_active_deadline_seconds',
         'must be >= 0 (0: no deadline)')
    # the point-of-no-return gate reads these only after the rollout: a typo must stop the deploy before anything
    check(_backups.parse_max_age, v['migrations_backup_max_age'])
    if v['migrations_backup_confirmed_at']:
        rule(_backups.parse_timestamp(v['migrations_backup_confirmed_at']) is not None, 'migrations_backup_confirmed_at',
             'must be an ISO 8601 date and time with its zone, such as "2026-12-05T03:00:00Z" (quote it in YAML)')
    if v['config_update_check_url']:
        parts = urlsplit(v['config_update_check_url'])
        rule(parts.scheme in ('http', 'https') and parts.netloc, 'config_update_check_url',
             'must be an http(s) URL such as https://api.joinmastodon.org/update-check, or empty to disable the check')
    check(check_quantities, 'sidekiq_resources', v['sidekiq_resources'])
    check(check_node_selector, 'sidekiq_node_selector', v['sidekiq_node_selector'])
    check(check_tolerations, 'sidekiq_tolerations', v['sidekiq_tolerations'])
    rule(v['sidekiq_max_concurrency'] >= 1, 'sidekiq_max_concurrency', 'must be >= 1')
    groups = check(_manifests.sidekiq_groups, v['sidekiq_workers'], {
        'resources': v['sidekiq_resources'], 'node_selector': v['sidekiq_node_selector'],
        'tolerations': v['sidekiq_tolerations'], 'max_concurrency': v['sidekiq_max_concurrency']})
    for group in groups or []:
        where = 'group %s' % group['name']
        check(check_quantities, 'sidekiq_workers', group['resources'], where)
        check(check_node_selector, 'sidekiq_workers', group['node_selector'], where)
        check(check_tolerations, 'sidekiq_workers', group['tolerations'], where)
    errors += consistency_checks(v, groups or [])
    errors.extend(shutdown_checks(v))
    errors.extend(downtime.rules(v))
    return errors, groups


# The labels the manifests set themselves, and select pods by (_manifests: labels(), selector()): a value from
# config_labels would be set on the objects but not on the pods or the selectors.
OWN_LABELS = ('app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component',
              'app.kubernetes.io/part-of', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/version',
              _manifests.GROUP_LABEL)
# What the pods mount besides the CA (_manifests.volumes): a CA directory on or above one of them hides it.
OTHER_MOUNTS = ('/tmp', _manifests.RAILS_TMP, _manifests.MEDIA_PATH)


def _inside(path, parent):
    return path == parent or path.startswith(parent.rstrip('/') + '/')


def _env_value(v, key, variables=('config_env', 'config_extra_env')):
    """(variable, value as text) of `key` in the first of `variables` that sets it, or (None, None)."""
    for variable in variables:
        if key in (v.get(variable) or {}) and v[variable][key] is not None:
            return variable, str(v[variable][key]).strip()
    return None, None


def consistency_checks(v, groups):
    """Rules whose breach the API server accepts and the running instance pays for; [ConfigError]."""
    errors = []

    def rule(ok, name, reason):
        if not ok:
            errors.append(ConfigError(name, reason))

    # The pool Mastodon opens is DB_POOL when set (config/database.yml); the containers' own env wins over the
    # ConfigMap's, so a role's extra_env lowers it below the threads that share it (ActiveRecord::ConnectionTimeoutError).
    for variable, threads, what in (('web_extra_env', v['web_max_threads'], 'web_max_threads (%d)' % v['web_max_threads']),
                                    ('sidekiq_extra_env', max([g['concurrency'] for g in groups] or [0]),
                                     'the largest sidekiq concurrency (%d)' % max([g['concurrency'] for g in groups] or [0]))):
        pool = (v.get(variable) or {}).get('DB_POOL')
        if pool is not None and INT_TEXT.match(str(pool).strip()):
            rule(int(pool) >= threads, variable, 'DB_POOL (%s) is lower than %s: the threads would wait for database '
                 'connections (ActiveRecord::ConnectionTimeoutError); remove it or raise it' % (pool, what))
    if v['config_database_source'] == 'digitalocean':
        # DigitalOcean's managed databases accept TLS connections only (reference README: DigitalOcean facts).
        rule(v['config_db_sslmode'] != 'disable', 'config_db_sslmode', 'disable: DigitalOcean\'s PostgreSQL accepts '
             'only TLS connections; use verify-full (with the cluster\'s CA, the default) or require')
        for variable, url in (('config_redis_url', v.get('config_redis_url') or ''),) + tuple(
                (var, value) for var, value in [_env_value(v, 'REDIS_URL')] if var):
            rule(urlsplit(url).scheme != 'redis', variable, ('REDIS_URL: ' if variable != 'config_redis_url' else '') +
                 'a redis:// URL: DigitalOcean\'s Valkey/Redis accepts only TLS (rediss://)')
    variable, url = _env_value(v, 'STREAMING_API_BASE_URL')
    if variable and v['config_streaming_host']:
        host = urlsplit(url).hostname or ''
        rule(host == v['config_streaming_host'], variable, 'STREAMING_API_BASE_URL points at %s, but config_streaming_host '
             'is %s (the Ingress serves streaming there): remove it, config_streaming_host sets it'
             % (host or 'no host', v['config_streaming_host']))
    for variable in ('config_image_repository', 'config_streaming_image_repository'):
        last = (v.get(variable) or '').rsplit('/', 1)[-1]
        rule(':' not in last and '@' not in last, variable, 'carries a tag or digest (%s); give the repository only: '
             'the tag comes from config_mastodon_version' % last.split(':', 1)[-1].split('@', 1)[-1][:80])
    for key in sorted(v['config_labels'], key=str):
        rule(key not in OWN_LABELS, 'config_labels', '%s is set by the deploy itself and selects its pods: a value here '
             'would be set on the objects but not on the pods nor the selectors; use another label key' % key)
    mount = v['config_ca_mount_dir'].rstrip('/') or '/'
    if mount.startswith('/'):
        hidden = [other for other in OTHER_MOUNTS if _inside(other, mount)]
        rule(not hidden, 'config_ca_mount_dir', '%s would be mounted over %s, which the pods mount themselves: use a '
             'directory of its own such as /etc/mastodon/db-ca' % (mount, ', '.join(hidden)))
        rule(hidden or not (_inside(mount, _manifests.APP_ROOT) or _inside(_manifests.APP_ROOT, mount)),
             'config_ca_mount_dir', '%s would hide Mastodon\'s own files under %s: use a directory of its own such as '
             '/etc/mastodon/db-ca' % (mount, _manifests.APP_ROOT))
    if v['web_hpa_enabled'] and v['web_pdb_enabled']:
        # At the autoscaler's minimum, a PodDisruptionBudget that keeps as many pods admits no eviction: drains hang.
        rule(v['web_pdb_min_available'] < v['web_hpa_min_replicas'], 'web_pdb_min_available',
             'must be lower than web_hpa_min_replicas (%d): at the autoscaler\'s minimum no pod could be evicted, so '
             'node drains (DOKS upgrades included) would hang' % v['web_hpa_min_replicas'])
    return errors


def connection_rules(v, now=None):
    """The rules about how the pods reach their images and services (a list of ConfigError)."""
    errors = []

    def rule(ok, name, reason):
        if not ok:
            errors.append(ConfigError(name, reason))

    digest = v['config_streaming_image_digest']
    rule(not digest or _DIGEST.match(digest), 'config_streaming_image_digest',
         'must be sha256: followed by 64 lower-case hexadecimal digits (the digest of the streaming image)')
    if v['config_database_source'] == 'explicit' and v['config_db_pgbouncer']:
        # Mastodon's documentation: migrations cannot run through PgBouncer in transaction mode (they take advisory
        # locks and prepared statements that outlive a transaction); the Jobs connect to the direct endpoint.
        rule(v['config_db_direct_host'], 'config_db_direct_host',
             'is required with config_db_pgbouncer: true: config_db_host is a PgBouncer pool and the migration Jobs '
             'would run through it, which Mastodon does not support. Set config_db_direct_host (and '
             'config_db_direct_port) to the PostgreSQL server itself')
    for variable in ('config_env', 'config_extra_env', 'migrations_extra_env'):
        # config/database.yml: Rails merges DATABASE_URL over the DB_* settings of every process, the migration
        # Jobs' direct endpoint included; they would migrate wherever it points (a pool, too).
        rule('DATABASE_URL' not in v[variable], variable,
             'DATABASE_URL: Rails merges it over the direct connection of the migration Jobs (config/database.yml), '
             'so they would migrate wherever it points, a PgBouncer pool included; give the database through '
             'config_db_host, config_db_port, config_db_name, config_db_user, config_db_password (and '
             'config_db_direct_host) or config_do_database_cluster instead')
        rule(variable == 'migrations_extra_env' or 'ES_CA_FILE' not in v[variable]
             or not (v['config_es_ca_pem'] or v['config_do_opensearch_cluster']),
             variable, 'ES_CA_FILE: it is set to the mounted CA of config_es_ca_pem or config_do_opensearch_cluster; '
                       'remove it here')
    if v['config_es_ca_pem']:
        try:
            check_given_ca('config_es_ca_pem', v['config_es_ca_pem'], now)
        except ConfigError as exc:
            errors.append(exc)
    rule(not v['config_do_opensearch_cluster'] or v['config_database_source'] == 'digitalocean',
         'config_do_opensearch_cluster', 'needs config_database_source=digitalocean (the plan reads the CA from '
                                         "DigitalOcean's API); with another source give the CA in config_es_ca_pem")
    rule(not v['config_redis_ca_pem'], 'config_redis_ca_pem',
         "web and Sidekiq cannot use a private Redis CA: Mastodon's Redis client gets only its URL and driver "
         '(lib/mastodon/redis_configuration.rb:47,60), so they verify a rediss:// server against the system trust '
         'store of the image only, and would fail to connect after the TLS preflight passed. Give Redis a '
         'certificate from a publicly trusted CA (as DigitalOcean\'s Valkey has) and leave config_redis_ca_pem empty')
    return errors


# Seconds a process needs after the preStop hook and SIGTERM (Puma's last requests, Sidekiq pushing its unfinished
# jobs back to Redis) before the kubelet's SIGKILL at the end of the grace period.
SHUTDOWN_MARGIN = 5
# (variable, lowest, highest) of the shutdown and rollout timings.
SHUTDOWN_BOUNDS = (
    ('web_prestop_delay_seconds', 0, 300), ('web_termination_grace_period_seconds', 0, 3600),
    ('web_progress_deadline_seconds', 10, 3600),
    ('streaming_prestop_delay_seconds', 0, 300), ('streaming_termination_grace_period_seconds', 0, 3600),
    ('streaming_progress_deadline_seconds', 10, 3600),
    ('sidekiq_shutdown_timeout_seconds', 1, 3600), ('sidekiq_quiet_seconds', 0, 3600),
    ('sidekiq_termination_grace_period_seconds', 0, 7200), ('sidekiq_progress_deadline_seconds', 10, 3600),
)


def shutdown_checks(v):
    """The graceful-shutdown rules: bounds, and a grace period long enough for what runs inside it.

    The kubelet counts terminationGracePeriodSeconds from the start of the termination: the preStop hook runs
    inside it, then SIGTERM, then SIGKILL when the grace period is over. A grace period shorter than the preStop
    delay (web, streaming) or than TSTP's wait plus Sidekiq's -t (Sidekiq: after -t it pushes the unfinished jobs
    back to Redis, which a SIGKILL would prevent) defeats the purpose; refused naming both variables."""
    errors = []
    for name, low, high in SHUTDOWN_BOUNDS:
        if not low <= v[name] <= high:
            errors.append(ConfigError(name, 'must be between %d and %d seconds' % (low, high)))
    if errors:
        return errors
    for grace, delay in (('web_termination_grace_period_seconds', 'web_prestop_delay_seconds'),
                         ('streaming_termination_grace_period_seconds', 'streaming_prestop_delay_seconds')):
        if v[grace] < v[delay] + SHUTDOWN_MARGIN:
            errors.append(ConfigError(grace, '(%d) must be at least %s (%d) + %d: the kubelet kills the pod when the '
                                             'grace period ends, and the preStop delay is part of it'
                                      % (v[grace], delay, v[delay], SHUTDOWN_MARGIN)))
    grace = 'sidekiq_termination_grace_period_seconds'
    need = v['sidekiq_quiet_seconds'] + v['sidekiq_shutdown_timeout_seconds'] + SHUTDOWN_MARGIN
    if v[grace] < need:
        reason = ('(%d) must be at least sidekiq_quiet_seconds (%d) + sidekiq_shutdown_timeout_seconds (%d) + %d = %d: '
                  'Sidekiq waits its shutdown timeout after SIGTERM, then pushes the unfinished jobs back to Redis; a '
                  'shorter grace period kills it first, and with Sidekiq\'s basic fetch the jobs it was running are lost'
                  % (v[grace], v['sidekiq_quiet_seconds'], v['sidekiq_shutdown_timeout_seconds'], SHUTDOWN_MARGIN, need))
        errors.append(ConfigError(grace, reason))
    return errors
