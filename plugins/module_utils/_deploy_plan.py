# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy as one plan, then one apply (PRIVATE: no API guarantees; docs/dev/shapes.md sections 1 and 2).

Plan (nothing is written anywhere):

1. ``check_variables``: every role variable against its role's ``meta/argument_specs.yml`` (the single source of
   options), strictly typed ("two" is no int), unknown ``<role>_*`` variables with "did you mean";
2. ``cross_checks``: rules between variables (names, hosts, quantities, strategy, selectors, sidekiq groups, HPA,
   exposure, the given CA);
3. DigitalOcean look-ups (cluster, CA, pools, users) -> the database and Redis endpoints;
4. the cluster's state (``read_state``) and the guards: kept secrets (``kept_secrets``) and LOCAL_DOMAIN;
5. the environment validated for the version, split per component, and the model of section 2;
6. every manifest rendered (``_manifests.build``), the TLS preflight, and a server-side dry-run of every object
   (``ComponentApplier.plan``), a rejection mapped back to the variable that produced the field.

Apply: ``ComponentApplier.apply`` per component in order (config, migrate-pre, web, streaming, sidekiq,
migrate-post); only objects the dry-run found different are written, so a re-run writes nothing.

Every error is a ``PlanError`` carrying ``ConfigError``s, each naming its variable; values are never echoed.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import os
import re
import threading

from urllib.parse import urlsplit

from ansible_collections.fediops.mastodon.plugins.module_utils import _manifests
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import (
    Applier, ApplyError, KubeError, key_of, order_objects)

COMPONENTS = _manifests.COMPONENTS
ROLES = ('config', 'migrations', 'web', 'streaming', 'sidekiq')
ROLE_OF_COMPONENT = {'config': 'config', 'migrate-pre': 'migrations', 'web': 'web', 'streaming': 'streaming',
                     'sidekiq': 'sidekiq', 'migrate-post': 'migrations'}
KEPT_KEYS = ('SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY',
             'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY')

# Keys of Mastodon's environment that a variable owns: set through config_env they would bypass its checks
OWNED_KEYS = {'LOCAL_DOMAIN': 'config_local_domain', 'WEB_DOMAIN': 'config_web_domain'}

_BOOL_TRUE = ('true', 'yes', 'on', '1')
_BOOL_FALSE = ('false', 'no', 'off', '0')
_INT_TEXT = re.compile(r'\A[+-]?[0-9]+\Z')
_DNS_LABEL = re.compile(r'\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z')
_NAME = re.compile(r'\A[a-z]([-a-z0-9]{0,28}[a-z0-9])?\Z')
_HOST = re.compile(r'\A(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\Z')
# Kubernetes' resource.Quantity: a signed decimal number and one suffix (binary SI, decimal SI or an exponent).
_QUANTITY = re.compile(r'\A[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?\Z')
_INT_OR_PERCENT = re.compile(r'\A[0-9]+%?\Z')
_LABEL_KEY = re.compile(r'\A([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z')
_LABEL_VALUE = re.compile(r'\A(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?\Z')
TOLERATION_KEYS = ('key', 'operator', 'value', 'effect', 'tolerationSeconds')
RESOURCE_SECTIONS = ('requests', 'limits', 'claims')


class PlanError(Exception):
    """Every problem found by one step of the plan; each ConfigError names its variable."""

    def __init__(self, errors, what='the plan found problems'):
        self.errors = list(errors)
        self.what = what
        super(PlanError, self).__init__(self.message())

    def message(self):
        lines = ['%s (%d); nothing was changed:' % (self.what, len(self.errors))]
        lines += ['- %s' % e for e in self.errors]
        return '\n'.join(lines)

    @property
    def variables(self):
        return sorted(set(e.key for e in self.errors))


def did_you_mean(word, candidates):
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return ' (did you mean %s?)' % match[0] if match else ''


# ------------------------------------------------------------------------------------------- role variables
def load_role_specs(roles_dir, loader):
    """{role: {variable: spec}} from roles/<role>/meta/argument_specs.yml (entry point main)."""
    specs = {}
    for role in ROLES:
        with open(os.path.join(roles_dir, role, 'meta', 'argument_specs.yml'), encoding='utf-8') as handle:
            specs[role] = loader(handle.read())['argument_specs']['main'].get('options') or {}
    return specs


def _type_error(spec_type):
    return {'int': 'must be an integer', 'bool': 'must be true or false', 'dict': 'must be a mapping',
            'list': 'must be a list', 'str': 'must be a string', 'path': 'must be a path (a string)',
            'float': 'must be a number'}.get(spec_type, 'has the wrong type')


def _described(value):
    """What the value is, without echoing it (it may be a secret)."""
    if value is None:
        return 'a null'
    # ansible-core wraps values in its own subclasses (_AnsibleTaggedStr...): name the base type the operator wrote
    for base, word in ((bool, 'boolean'), (int, 'number'), (float, 'number'), (str, 'string'), (dict, 'mapping'),
                       (list, 'list')):
        if isinstance(value, base):
            return 'a %s' % word
    return 'a %s' % type(value).__name__


def coerce(name, spec, value):
    """`value` as the spec's type, strictly: ints are ints or digit strings (-e var=3), booleans are booleans or
    yes/no/true/false strings; nothing else is converted. Raises ConfigError naming the variable."""
    kind = spec.get('type', 'str')
    if kind == 'int':
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and _INT_TEXT.match(value))):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
        value = int(value)
    elif kind == 'bool':
        if isinstance(value, str) and value.strip().lower() in _BOOL_TRUE + _BOOL_FALSE:
            value = value.strip().lower() in _BOOL_TRUE
        elif not isinstance(value, bool):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
    elif kind in ('str', 'path'):
        if not isinstance(value, str):
            raise ConfigError(name, '%s, got %s (quote it)' % (_type_error(kind), _described(value)))
        value = str(value)
    elif kind == 'dict':
        if not isinstance(value, dict):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
        value = dict(value)
    elif kind == 'list':
        if not isinstance(value, list):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
        elements = spec.get('elements')
        if elements:
            value = [coerce('%s[%d]' % (name, i), {'type': elements}, item) for i, item in enumerate(value)]
    if spec.get('choices') is not None and value not in spec['choices']:
        raise ConfigError(name, 'must be one of %s%s' % (', '.join(repr(c) for c in spec['choices']),
                                                         did_you_mean(str(value), [str(c) for c in spec['choices']])))
    return value


def check_variables(task_vars, specs):
    """(values, errors): every variable of every role, typed; defaults from the specs where unset."""
    values, errors = {}, []
    known = {}
    for role, options in specs.items():
        for name, spec in options.items():
            known[name] = role
            if name in task_vars and task_vars[name] is not None:
                try:
                    values[name] = coerce(name, spec, task_vars[name])
                except ConfigError as exc:
                    errors.append(exc)
            elif spec.get('required'):
                errors.append(ConfigError(name, 'is required'))
            else:
                values[name] = copy.deepcopy(spec.get('default'))
    for name in sorted(task_vars):
        role = name.split('_', 1)[0]
        if role in specs and '_' in name and '__' not in name and name not in known:
            errors.append(ConfigError(name, 'is not a variable of the %s role%s' % (
                role, did_you_mean(name, [n for n, r in known.items() if r == role]))))
        else:
            match = misspelt_role_variable(name, specs, known)
            if match:
                errors.append(ConfigError(name, 'is not a variable of any role (did you mean %s?)' % match))
    return values, errors


def misspelt_role_variable(name, specs, known):
    """The role variable that `name` misspells in its role prefix (migration_resources, sidekick_workers), or None.
    Only when the prefix is close to a role name and the whole name close to one of its variables, so that the
    play's other variables are left alone."""
    role = name.split('_', 1)[0]
    if role in specs or '_' not in name or not difflib.get_close_matches(role, list(specs), n=1, cutoff=0.6):
        return None
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.85)
    return match[0] if match else None


# ------------------------------------------------------------------------------------------- cross-role rules
def check_host(name, value, allow_empty=True):
    if not value and allow_empty:
        return
    if '://' in value or '/' in value:
        raise ConfigError(name, 'must be a host name without scheme or path (e.g. cdn.example.com, not '
                                'https://cdn.example.com/)')
    if not _HOST.match(value):
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


def check_given_ca(name, pem, now=None):
    """A CA given as PEM text: certificates only (a private key is refused and never echoed), each one a CA
    (basicConstraints CA:TRUE) inside its validity. Returns the normalised PEM bundle."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _x509
    if 'PRIVATE KEY' in pem:
        raise ConfigError(name, 'contains a PRIVATE KEY block: give only the CA certificate (and rotate that key: '
                                'it has been in your variables)')
    blocks = re.findall(r'-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----', pem, re.S)
    if not blocks:
        raise ConfigError(name, 'must be PEM text with at least one -----BEGIN CERTIFICATE----- block')
    outside = re.sub(r'-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----', '', pem, flags=re.S)
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
    for key, value in v['config_labels'].items():
        rule(isinstance(value, str) and _LABEL_KEY.match(str(key)) and _LABEL_VALUE.match(value), 'config_labels',
             '%s: label keys and values must be strings of letters, digits, -, _ and .' % key)
    for variable in ('config_env', 'config_extra_env'):
        for key, owner in sorted(OWNED_KEYS.items()):
            rule(key not in v[variable], variable, '%s: set %s instead (the LOCAL_DOMAIN guard and the Ingress hosts '
                 'read it there)' % (key, owner))
    for key in sorted(set(v['config_secrets']) - set(mconfig.GENERATED), key=str):
        rule(False, 'config_secrets', 'unknown key %s%s (known: %s)' % (
            key, did_you_mean(str(key), mconfig.GENERATED), ', '.join(mconfig.GENERATED)))
    db_pool = v['config_env'].get('DB_POOL')
    if db_pool is not None and _INT_TEXT.match(str(db_pool).strip()):
        # config/database.yml: pool is DB_POOL when set, else MAX_THREADS; a smaller pool makes Puma's threads wait
        # for a connection (ActiveRecord::ConnectionTimeoutError). Sidekiq sets DB_POOL per group on its containers.
        rule(int(db_pool) >= v['web_max_threads'], 'config_env', 'DB_POOL (%s) is lower than web_max_threads (%d): '
             "Puma's threads would wait for database connections; remove it or raise it" % (db_pool, v['web_max_threads']))
    for role in ('web', 'streaming', 'sidekiq', 'migrations'):
        variable = role + '_extra_env'
        for key in sorted(v[variable], key=str):
            reason = (mconfig.FORBIDDEN.get(key) or mconfig.REJECTED.get(key) or
                      ('set %s instead' % OWNED_KEYS[key] if key in OWNED_KEYS else None))
            rule(reason is None, variable, '%s: %s' % (key, reason))
    for role in ('web', 'streaming'):
        rule(v[role + '_replicas'] >= 0, role + '_replicas', 'must be >= 0')
        check(check_quantities, role + '_resources', v[role + '_resources'])
        check(check_node_selector, role + '_node_selector', v[role + '_node_selector'])
        check(check_tolerations, role + '_tolerations', v[role + '_tolerations'])
        rule(v[role + '_exposure'] != 'httproute' or v[role + '_gateway_parent_refs'], role + '_gateway_parent_refs',
             'is required with %s_exposure=httproute' % role)
        rule(v[role + '_wait_timeout'] > 0, role + '_wait_timeout', 'must be > 0')
        pdb = v[role + '_pdb_min_available']
        rule(pdb >= 0, role + '_pdb_min_available', 'must be >= 0')
        fixed = not v.get(role + '_hpa_enabled')  # with the autoscaler the replicas move: not checked here
        if v[role + '_pdb_enabled'] and fixed and v[role + '_replicas'] > 0:
            rule(pdb < v[role + '_replicas'], role + '_pdb_min_available',
                 'must be lower than %s_replicas (%d): no pod could ever be evicted, so node drains (DOKS upgrades '
                 'included) would hang' % (role, v[role + '_replicas']))
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
    rule(v['migrations_active_deadline_seconds'] > 0, 'migrations_active_deadline_seconds', 'must be > 0')
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
    return errors, groups


# ------------------------------------------------------------------------------------------- endpoints
def do_endpoints(v, client, kube_server=None):
    """The PostgreSQL and Redis endpoints from the DigitalOcean API (as roles/config did with do_database_info):
    {'db': {...}, 'redis_url': str, 'ca_pem': str, 'cluster': <the PostgreSQL cluster>}."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _digitalocean as do
    from ansible_collections.fediops.mastodon.plugins.module_utils import _x509
    key = 'private_connection' if v['config_do_private_network'] else 'connection'
    try:
        cluster = do.find_cluster_by_name(client, v['config_do_database_cluster'])
    except do.DigitalOceanError as exc:
        raise PlanError([ConfigError('config_do_database_cluster', exc.args[0] if exc.args else str(exc))],
                        'DigitalOcean look-up failed')
    pools = client.database_pools(cluster['id']) if cluster.get('engine') in do.POOL_ENGINES else []
    passwords = do.collect_passwords(cluster, pools)
    direct = cluster.get(key) or {}
    pool = None
    if v['config_do_use_pool']:
        for item in pools:
            if v['config_do_pool'] and item.get('name') == v['config_do_pool'] or \
                    not v['config_do_pool'] and item.get('mode') == 'transaction' and item.get('db') == v['config_db_name']:
                pool = item
                break
        if v['config_do_pool'] and pool is None:
            raise PlanError([ConfigError('config_do_pool', 'connection pool %s not found in cluster %s (pools: %s)' % (
                v['config_do_pool'], v['config_do_database_cluster'],
                ', '.join(p.get('name') for p in pools) or 'none'))], 'DigitalOcean look-up failed')
    users = passwords.get('users', {})
    if pool is not None:
        pool_password = ((passwords.get('pools', {}).get(pool['name']) or {}).get(key) or users.get(pool.get('user'))
                         or passwords.get(key))
        db = {'host': pool[key]['host'], 'port': int(pool[key]['port']), 'name': pool['name'], 'user': pool['user'],
              'password': pool_password, 'pgbouncer': True, 'direct_name': pool['db']}
    else:
        db = {'host': direct.get('host'), 'port': int(direct.get('port') or 25060), 'name': v['config_db_name'],
              'user': direct.get('user'), 'password': passwords.get(key), 'pgbouncer': False,
              'direct_name': v['config_db_name']}
    # Migrations connect directly but as the APPLICATION's user (shapes section 2): never the admin.
    db.update(direct_host=direct.get('host'), direct_port=int(direct.get('port') or 25060), direct_user=db['user'],
              direct_password=users.get(db['user']) or db['password'])
    redis_url = v['config_redis_url']
    clusters = [('config_do_database_cluster', cluster)]
    if v['config_do_redis_cluster']:
        try:
            redis = do.find_cluster_by_name(client, v['config_do_redis_cluster'])
        except do.DigitalOceanError as exc:
            raise PlanError([ConfigError('config_do_redis_cluster', exc.args[0] if exc.args else str(exc))],
                            'DigitalOcean look-up failed')
        try:
            redis_url = do.redis_url(redis, private=v['config_do_private_network'])
        except do.DigitalOceanError as exc:
            raise PlanError([ConfigError('config_do_redis_cluster', exc.args[0] if exc.args else str(exc))],
                            'DigitalOcean look-up failed')
        clusters.append(('config_do_redis_cluster', redis))
    ca_pem = v['config_db_ca_pem']
    if not ca_pem:
        try:
            ca_pem = _x509.load_ca_from_base64(client.database_ca(cluster['id']), what='the CA of %s' % cluster.get('name'))[0]
        except _x509.X509Error as exc:
            raise PlanError([ConfigError('config_do_database_cluster', str(exc))], 'DigitalOcean look-up failed')
    warnings = trusted_sources(v, client, clusters, kube_server) if v['config_kubernetes'] else []
    return {'db': db, 'redis_url': redis_url, 'ca_pem': ca_pem, 'cluster': cluster, 'warnings': warnings}


def trusted_sources(v, client, clusters, kube_server):
    """Warnings; PlanError naming each database whose trusted sources (firewall rules) do not admit the Kubernetes
    cluster the applications run in: they could not connect (reference README, DigitalOcean facts)."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _digitalocean as do
    cluster_id = v['config_do_kubernetes_cluster_id'] or do.kubernetes_cluster_id_from_server(kube_server)
    errors, warnings = [], []
    for variable, database in clusters:
        rules = client.database_firewall_rules(database['id'])
        problem = do.trusted_sources_problem(database.get('name'), rules, cluster_id, database_id=database['id'])
        if problem and cluster_id:
            errors.append(ConfigError(variable, problem))
        elif problem:
            warnings.append(problem)
    if errors:
        raise PlanError(errors, 'the databases do not admit the Kubernetes cluster')
    return warnings


def explicit_endpoints(v):
    direct_host = v['config_db_direct_host'] or v['config_db_host']
    db = {'host': v['config_db_host'], 'port': v['config_db_port'], 'name': v['config_db_name'],
          'user': v['config_db_user'], 'password': v['config_db_password'], 'pgbouncer': v['config_db_pgbouncer'],
          'direct_host': direct_host,
          'direct_port': v['config_db_direct_port'] if v['config_db_direct_host'] else v['config_db_port'],
          'direct_name': v['config_db_direct_name'] or v['config_db_name'],
          'direct_user': v['config_db_user'], 'direct_password': v['config_db_password']}
    return {'db': db, 'redis_url': v['config_redis_url'], 'ca_pem': v['config_db_ca_pem']}


def base_env(v, endpoints):
    """The environment the variables imply, before config_env overrides it (the old config__env)."""
    db, redis_url, ca_pem = endpoints['db'], endpoints['redis_url'], endpoints['ca_pem']
    env = {'LOCAL_DOMAIN': v['config_local_domain'], 'DB_HOST': db['host'], 'DB_PORT': db['port'],
           'DB_NAME': db['name'], 'DB_USER': db['user'], 'DB_PASS': db['password'],
           'DB_SSLMODE': v['config_db_sslmode'] or ('verify-full' if ca_pem else 'require')}
    if v['config_web_domain']:
        env['WEB_DOMAIN'] = v['config_web_domain']
    if db['pgbouncer']:
        env['PREPARED_STATEMENTS'] = False
    if redis_url:
        env['REDIS_URL'] = redis_url
        if redis_url.startswith('rediss://'):
            env['REDIS_DRIVER'] = 'ruby'
    if v['config_streaming_host']:
        env['STREAMING_API_BASE_URL'] = 'wss://' + v['config_streaming_host']
    if v['config_cdn_host']:
        env['CDN_HOST'] = 'https://' + v['config_cdn_host']
    env.update(v['config_env'])
    return env


# ------------------------------------------------------------------------------------------- the cluster
def _catching(error_class, func, *args):
    """A callable returning func(*args), or the error_class exception it raised."""
    def call():
        try:
            return func(*args)
        except error_class as exc:
            return exc
    return call


def _concurrently(calls):
    """{name: result} of {name: callable}, run in threads; the first exception is raised."""
    out, errors = {}, []

    def run(name):
        try:
            out[name] = calls[name]()
        except Exception as exc:  # pylint: disable=broad-except  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return out


def read_state(client, v):
    """What the plan needs from the cluster, read concurrently (GETs only)."""
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_secret_info import read_secret
    name, ns = v['config_name'], v['config_namespace']
    todo = {
        'namespace': lambda: _get(client, client.path('v1', 'Namespace', None, ns)),
        'kept': lambda: read_secret(client, ns, name + '-generated-secrets'),
        'env_secret': lambda: read_secret(client, ns, name + '-env'),
        'env_configmap': lambda: _get(client, client.path('v1', 'ConfigMap', ns, name + '-env')),
        'web': lambda: _get(client, client.path('apps/v1', 'Deployment', ns, name + '-web')),
        'marker': lambda: _get(client, client.path('v1', 'Secret', ns, name + '-set-config')),
    }
    out = _concurrently(todo)
    out['kept_exists'] = out['kept']['exists']
    out['kept'] = out['kept']['data'] if out['kept']['exists'] else {}
    out['env_secret_exists'] = out['env_secret']['exists']
    out['env_secret'] = out['env_secret']['data'] if out['env_secret']['exists'] else {}
    out['instance'] = [what for what, present in (
        ('Secret %s-env' % name, out['env_secret_exists']), ('ConfigMap %s-env' % name, out['env_configmap'] is not None),
        ('Deployment %s-web' % name, out['web'] is not None),
        ('ApplySet %s-set-config' % name, out['marker'] is not None)) if present]
    return out


def _get(client, path):
    status, body = client.request('GET', path)
    if status == 404:
        return None
    if status != 200:
        from ansible_collections.fediops.mastodon.plugins.module_utils._kube import status_message
        raise KubeError('GET %s: HTTP %s: %s' % (path, status, status_message(body)), status=status)
    return body


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


# ------------------------------------------------------------------------------------------- the model
def image_ref(repository, version):
    return '%s@%s' % (repository, version.split('@', 1)[1]) if '@' in version else '%s:%s' % (repository, version)


def build_model(v, groups, endpoints, env, kept, version):
    """The model of docs/dev/shapes.md section 2."""
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
        'streaming_image': image_ref(v['config_streaming_image_repository'], version),
        'labels': labels, 'web_domain': v['config_web_domain'] or v['config_local_domain'],
        'streaming_host': v['config_streaming_host'], 'env': envs, 'checksums': checksums,
        'ca_pem': endpoints['ca_pem'] or '', 'redis_ca_pem': v['config_redis_ca_pem'],
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
    more, warnings = mconfig.validate(env, endpoints['db']['pgbouncer'], version=version)
    warnings = mconfig.version_warnings(version) + warnings
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


# ------------------------------------------------------------------------------------------- TLS preflight
def tls_targets(endpoints, redis_ca_pem=''):
    """The endpoints of the TLS preflight, each with what the applications trust (shapes section 5): PostgreSQL
    (direct, pool) the database CA; Redis the system store (DigitalOcean's Valkey has a publicly trusted
    certificate, and Mastodon's Redis client takes no CA option) or config_redis_ca_pem for a self-managed Redis."""
    db, ca = endpoints['db'], endpoints['ca_pem'] or None
    targets = [('database', db['direct_host'], db['direct_port'], 'postgres', ca)]
    if db['pgbouncer']:
        targets.append(('pool', db['host'], db['port'], 'postgres', ca))
    url = endpoints['redis_url'] or ''
    if url.startswith('rediss://'):
        host, port = mconfig.url_host_port(url)
        targets.append(('redis', host, port or 6379, 'redis', redis_ca_pem or None))
    return [{'name': name, 'host': host, 'port': int(port), 'protocol': protocol, 'trust': 'ca' if ca_pem else 'system',
             'ca_pem': ca_pem} for name, host, port, protocol, ca_pem in targets if host]


def _preflight_errors(variable, failed, message):
    """One error per failing endpoint, so each is named; unreachable ones share one explanation."""
    if not failed:
        return []
    prefix = 'TLS preflight failed: '
    return [ConfigError(variable, prefix + part) for part in message[len(prefix):].split(' | ')]


def tls_preflight(endpoints, check_endpoint, hostaddr=None, timeout=10, redis_ca_pem=''):
    """The errors of the TLS preflight from the controller (tls_targets)."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _tls_check
    results = []
    for target in tls_targets(endpoints, redis_ca_pem):
        report, error = check_endpoint(host=target['host'], port=target['port'], protocol=target['protocol'],
                                       ca_pem=target['ca_pem'], trust=target['trust'], hostaddr=hostaddr or None,
                                       timeout=timeout)
        results.append(dict(report or {}, name=target['name'], error=error))
    return _preflight_errors('config_tls_preflight', *_tls_check.summarize(results))


def in_cluster_preflight(client, v, model, run_job=None):
    """The errors of the TLS preflight made from the namespace by a short-lived Job (_tls_incluster): for databases
    that admit only the Kubernetes cluster. The Job carries host names, ports and CAs, no credential."""
    from ansible_collections.fediops.mastodon.plugins.module_utils import _tls_incluster as incluster
    job = incluster.job_manifest(v['config_name'], v['config_namespace'], model['streaming_image'],
                                 tls_targets(model['tls_endpoints'], model['redis_ca_pem']), labels=model['labels'],
                                 timeout=v['config_tls_preflight_timeout'],
                                 image_pull_secrets=v['config_image_pull_secrets'])
    try:
        result = (run_job or incluster.run_job)(client, job)
    except incluster.InClusterError as exc:
        return [ConfigError('config_tls_preflight_in_cluster', 'TLS preflight failed: %s' % exc)]
    return _preflight_errors('config_tls_preflight_in_cluster', result['failed'], result['msg'] or '')


# ------------------------------------------------------------------------------------------- dry-run and apply
class ComponentApplier(Applier):
    """The Applier of one component: ``plan`` is a server-side dry-run of every object (a rejection mapped to the
    variable that produced the field), ``apply`` then writes only what the dry-run found different."""

    def __init__(self, client, component, namespace, apply_set, origins, new_namespace=False, **kwargs):
        super(ComponentApplier, self).__init__(client, namespace=namespace, apply_set=apply_set, check_mode=True,
                                               **kwargs)
        self.component = component
        self.origins = origins
        self.rejections = {}
        self.planned = {}
        self.objects = []
        if new_namespace:
            self.new_namespaces.add(namespace)

    def _apply_request(self, obj, force=None):
        if self.check_mode and obj['metadata'].get('namespace') in self.new_namespaces:
            # The namespace does not exist yet: the server would answer 404 to a dry-run; the plan's own checks
            # stand for it and the object is reported as to be created.
            return 404, None
        status, body = super(ComponentApplier, self)._apply_request(obj, force)
        if status not in (200, 201) and not (status == 404 and obj['metadata'].get('namespace') in self.new_namespaces):
            with self._lock:
                self.rejections[key_of(obj)] = body
        return status, body

    def rejection_errors(self):
        errors = []
        for key, body in sorted(self.rejections.items()):
            dummy_group, kind, dummy_ns, name = key
            causes = ((body or {}).get('details') or {}).get('causes') or [] if isinstance(body, dict) else []
            from ansible_collections.fediops.mastodon.plugins.module_utils._kube import status_message
            if not causes:
                variable = _manifests.origin_of(self.origins, kind, name, 'metadata') or 'config_name'
                errors.append(ConfigError(variable, '%s %s rejected by the API server: %s' % (kind, name, status_message(body))))
            for cause in causes:
                field = cause.get('field') or ''
                variable = _manifests.origin_of(self.origins, kind, name, field) or self.component_variable()
                errors.append(ConfigError(variable, '%s %s: %s: %s (rejected by the API server)' % (
                    kind, name, field or '?', cause.get('message') or cause.get('reason'))))
        return errors

    def component_variable(self):
        return {'config': 'config_env', 'web': 'web_resources', 'streaming': 'streaming_resources',
                'sidekiq': 'sidekiq_workers'}.get(self.component, 'migrations_resources')

    def plan(self, objects):
        """Dry-run: {key: action}; PlanError naming the variables on a rejection."""
        try:
            result = self.present(objects)
        except ApplyError as exc:
            errors = self.rejection_errors() or [ConfigError(self.component_variable(), exc.msg)]
            raise PlanError(errors, 'the API server rejects objects of %s (server-side dry-run)' % self.component)
        self.objects = self.prepare(objects)
        self.planned = dict(((r['apiVersion'].split('/')[0] if '/' in r['apiVersion'] else '', r['kind'],
                              r['namespace'] or '', r['name']), r) for r in result['objects'])
        self.plan_result = result
        return result

    def summary(self):
        counts = {}
        for entry in self.plan_result['objects']:
            counts.setdefault(entry['action'], []).append('%s/%s' % (entry['kind'], entry['name']))
        for entry in self.plan_result['pruned']:
            counts.setdefault('deleted (pruned)', []).append('%s/%s' % (entry['kind'], entry['name']))
        return counts

    def apply(self):
        """Write what the dry-run found different (created, configured, replaced), prune, wait."""
        self.check_mode = False
        self.results, self.diffs, self.pruned, self.done = [], [], [], []
        todo = [o for o in self.objects if (self.planned.get(key_of(o)) or {}).get('action') != 'unchanged']
        # Objects the dry-run found unchanged are not written; their live state is what the dry-run returned.
        settled = [(o, (self.planned.get(key_of(o)) or {}).get('object')) for o in self.objects if o not in todo]
        applied = []
        parent_changed = False
        for group in order_objects(todo):
            if self.set_id and not parent_changed and any(o['metadata'].get('namespace') for o in group):
                parent_changed = self.write_parent(self.objects, union=True) or parent_changed
            applied.extend(self.run_tiers([group], self.apply_one))
        if self.set_id:
            declared = set(key_of(o) for o in self.objects)
            strays = [item for key, item in self.live.items() if key not in declared]
            for dummy, entry in self.run_tiers(order_objects(strays, reverse=True), self.delete_one):
                if entry:
                    self.pruned.append(dict((k, entry[k]) for k in ('kind', 'apiVersion', 'namespace', 'name')))
            parent_changed = self.write_parent(self.objects, union=False) or parent_changed
        if self.wait:
            self.wait_for([(obj, body[1]) for obj, body in applied] + settled)
        changed = parent_changed or any(r['action'] != 'unchanged' for r in self.results)
        out = self.result(changed)
        out['unchanged'] = len(settled)
        return out


def summary_text(summaries):
    """The per-component summary shown before the per-object diffs in check mode."""
    lines = ['Plan of the deploy (per component):']
    for component, counts in summaries:
        if not counts:
            lines.append('  %-12s nothing to do' % component)
            continue
        parts = ['%d %s' % (len(items), action) for action, items in sorted(counts.items())]
        lines.append('  %-12s %s' % (component, ', '.join(parts)))
        for action, items in sorted(counts.items()):
            if action != 'unchanged':
                lines.append('      %s: %s' % (action, ', '.join(items)))
    return '\n'.join(lines) + '\n'


def backup_secret(name, namespace, labels, data):
    """The kept secrets being replaced (config_rotate_kept_secrets), kept out of every ApplySet so no prune
    removes them."""
    import base64
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
            'metadata': {'name': name + '-generated-secrets-previous', 'namespace': namespace, 'labels': dict(labels),
                         'annotations': {'fediops.mastodon/replaced-at': stamp}},
            'data': dict((k, base64.b64encode(val.encode('utf-8')).decode('ascii')) for k, val in sorted(data.items()))}


# ------------------------------------------------------------------------------------------- the whole deploy
WAITS = {'config': (None, 'config_apply_timeout'), 'migrate-pre': (None, 'migrations_wait_timeout'),
         'migrate-post': (None, 'migrations_wait_timeout'), 'web': ('web_wait', 'web_wait_timeout'),
         'streaming': ('streaming_wait', 'streaming_wait_timeout'), 'sidekiq': ('sidekiq_wait', 'sidekiq_wait_timeout')}

# What the plan checks, in order (the action's result lists it; docs/docsite/rst/guide_deploy.rst explains it).
PLAN_STEPS = (
    'variables: every role variable against its argument spec (strict types, choices, required, unknown <role>_* '
    'variables with did-you-mean)',
    'cross-role rules: names, hosts (CDN without scheme), versions, resource quantities, strategy, nodeSelector, '
    'tolerations, HPA bounds, exposure, sidekiq groups (keys, queues with did-you-mean, scheduler in exactly one '
    'replica, unique names, every queue served), the given CA (X.509, CA:TRUE, validity, no private key)',
    'endpoints: DigitalOcean look-ups (cluster, pool, users, CA) or the explicit variables',
    'cluster state: namespace, kept secrets, env Secret/ConfigMap, web Deployment, ApplySet marker (GETs only)',
    'guards: kept secrets (refuse when the instance exists without them), LOCAL_DOMAIN change',
    "environment: Mastodon's schema for the version, kept secrets generated once, split per component",
    'manifests: every object of every component rendered; uploads storage',
    'TLS preflight: PostgreSQL direct and pool against the CA, Redis against the system store',
    'server-side dry-run of every object of the selected components, rejections mapped to variables',
)


class Deploy(object):
    """One mastodon_deploy call: plan(), then apply() unless check mode."""

    def __init__(self, raw_vars, specs, components, kube_client=None, do_client=None, check_endpoint=None,
                 check_mode=False, diff=False, staged=None, now=None):
        self.raw_vars = raw_vars
        self.specs = specs
        self.components = [c for c in COMPONENTS if c in components]
        self.kube_client = kube_client
        self.do_client = do_client
        self.check_endpoint = check_endpoint
        self.check_mode = check_mode
        self.diff = diff
        self.staged = staged or {}
        self.now = now
        self.v = None
        self.appliers = []
        self.warnings = []
        self.backup = None
        self.env = None
        self.generated = []
        self.state = {}

    def check_inputs(self):
        v, errors = check_variables(self.raw_vars, self.specs)
        for name in set(e.key for e in errors):
            role = name.split('_', 1)[0]
            spec = self.specs.get(role, {}).get(name)
            if spec is not None:  # a wrong type: go on with the default, so every other problem is found too
                v[name] = copy.deepcopy(spec.get('default'))
        more, groups = cross_checks(v, self.now)
        errors += more
        if errors:
            raise PlanError(errors, 'invalid variables')
        self.v, self.groups = v, groups
        return v

    def in_cluster_preflight(self):
        """The preflight from the namespace: it needs the namespace, and it writes a Job, so check mode skips it."""
        if self.check_mode:
            self.warnings.append('the in-cluster TLS preflight creates a Job: skipped in check mode')
            return
        if self.state.get('namespace') is None:
            raise PlanError([ConfigError('config_tls_preflight_in_cluster', 'namespace %s does not exist yet: the '
                                         'in-cluster check runs a Job in it; create the namespace first'
                                         % self.v['config_namespace'])], 'TLS preflight failed')
        problems = in_cluster_preflight(self.kube_client(), self.v, dict(self.model, tls_endpoints=self.endpoints))
        if problems:
            raise PlanError(problems, 'TLS preflight failed')

    def kube_server(self):
        """The API server URL of the kubeconfig (a DOKS URL names the cluster's id), when the deploy uses one."""
        return getattr(self.kube_client(), 'host', None) if self.v['config_kubernetes'] else None

    def plan(self):
        v = self.check_inputs()
        # The DigitalOcean look-ups and the cluster's state are independent: read them at the same time.
        lookups = {}
        if v['config_database_source'] == 'digitalocean':
            lookups['endpoints'] = lambda: do_endpoints(v, self.do_client(v), self.kube_server())
        if v['config_kubernetes']:
            lookups['state'] = lambda: read_state(self.kube_client(), v)
        found = _concurrently(lookups)
        self.endpoints = found.get('endpoints') or explicit_endpoints(v)
        self.warnings += self.endpoints.get('warnings') or []
        if v['config_kubernetes']:
            self.state = found['state']
            local_domain_guard(v, self.state)
        known, self.backup = kept_secrets(v, self.state)
        staged = dict(self.staged.get('kept') or {})
        staged.update(known)
        version = mconfig.parse_version(v['config_mastodon_version'], v['config_allow_unsupported_version'])[0]
        self.env, self.generated, warnings = environment(v, self.endpoints, staged, version)
        self.warnings += warnings
        if self.generated and self.state.get('instance') and not v['config_rotate_kept_secrets']:
            raise PlanError([ConfigError('config_generate_secrets', 'would generate %s for an existing instance'
                                         % ', '.join(self.generated))], 'the kept secrets are incomplete')
        self.model = build_model(v, self.groups, self.endpoints, self.env, self.env, version)
        problem = _manifests.media_storage_problem(self.model)
        if problem:
            raise PlanError([ConfigError('config_media_volume_claim', problem.split(': ', 1)[1])], 'uploads would be lost')
        try:
            self.manifests = _manifests.build(self.model)
        except ConfigError as exc:
            raise PlanError([exc], 'the manifests cannot be built')
        except ValueError as exc:  # _migrations.MigrationsError: '<variable>: <reason>'
            variable, dummy, reason = str(exc).partition(': ')
            raise PlanError([ConfigError(variable, reason)], 'the manifests cannot be built')
        if v['config_tls_preflight'] and v['config_tls_preflight_in_cluster'] and v['config_kubernetes']:
            self.in_cluster_preflight()
        elif v['config_tls_preflight'] and self.check_endpoint is not None:
            problems = tls_preflight(self.endpoints, self.check_endpoint, v['config_tls_preflight_hostaddr'],
                                     v['config_tls_preflight_timeout'], v['config_redis_ca_pem'])
            if problems:
                raise PlanError(problems, 'TLS preflight failed')
        if v['config_kubernetes']:
            self.dry_run()
        return self

    def dry_run(self):
        v, client = self.v, self.kube_client()
        namespace_missing = self.state.get('namespace') is None
        if namespace_missing and not v['config_manage_namespace']:
            raise PlanError([ConfigError('config_namespace', 'namespace %s does not exist: create it (with '
                                         'docs/rbac/deployer.yml) or set config_manage_namespace: true'
                                         % v['config_namespace'])], 'the namespace is missing')
        if namespace_missing and 'config' not in self.components:
            raise PlanError([ConfigError('config_namespace', 'namespace %s does not exist: run the config role (or '
                                         'playbooks/deploy.yml) first' % v['config_namespace'])],
                            'the namespace is missing')
        errors = []
        for component in self.components:
            wait_var, timeout_var = WAITS[component]
            self.appliers.append(ComponentApplier(
                client, component, v['config_namespace'], '%s-set-%s' % (v['config_name'], component),
                self.manifests.origins, new_namespace=namespace_missing, diff=self.diff,
                wait=v[wait_var] if wait_var else True, wait_timeout=v[timeout_var]))
        # Dry-runs change nothing, so the components are planned at the same time (the apply keeps the order).
        outcomes = _concurrently(dict((a.component, _catching(PlanError, a.plan, self.manifests[a.component]))
                                      for a in self.appliers))
        for applier in self.appliers:
            if isinstance(outcomes[applier.component], PlanError):
                errors += outcomes[applier.component].errors
        if errors:
            raise PlanError(errors, 'the API server rejects objects (server-side dry-run)')

    def summaries(self):
        return [(a.component, a.summary()) for a in self.appliers]

    def check_result(self):
        changed = any(a.plan_result['changed'] for a in self.appliers) or bool(self.backup)
        diffs = [{'prepared': summary_text(self.summaries())}]
        for applier in self.appliers:
            diffs += applier.plan_result.get('diff') or []
        return self.result(changed, dict((a.component, self.brief(a.plan_result)) for a in self.appliers),
                           diffs if self.diff else None)

    def apply(self):
        client = self.kube_client()
        out = {}
        if self.backup:
            backup = backup_secret(self.v['config_name'], self.v['config_namespace'], self.model['labels'], self.backup)
            saver = Applier(client, namespace=self.v['config_namespace'])
            saver.present([backup])
        for applier in self.appliers:
            try:
                out[applier.component] = self.brief(applier.apply())
            except KubeError as exc:
                done = ', '.join(a.component for a in self.appliers if a.component in out) or 'nothing'
                raise KubeError('%s: %s (components done: %s; later ones not started)' % (applier.component, exc.msg, done),
                                status=exc.status)
        changed = any(r['changed'] for r in out.values()) or bool(self.backup)
        diffs = None
        if self.diff:
            diffs = [{'prepared': summary_text(self.summaries())}]
            for applier in self.appliers:
                diffs += applier.diffs
        return self.result(changed, out, diffs)

    @staticmethod
    def brief(result):
        return {'changed': result['changed'], 'pruned': result['pruned'],
                'objects': [dict((k, r[k]) for k in ('kind', 'namespace', 'name', 'action')) for r in result['objects']]}

    def result(self, changed, components, diffs):
        out = {'changed': changed, 'components': components, 'summary': summary_text(self.summaries()),
               'generated_secrets': sorted(self.generated), 'warnings': self.warnings,
               'plan': list(PLAN_STEPS), 'name': self.v['config_name'], 'namespace': self.v['config_namespace'],
               'version': self.model['version'], 'config_out': self.config_out()}
        if self.backup:
            out['kept_secrets_backup'] = '%s-generated-secrets-previous' % self.v['config_name']
        if diffs is not None:
            out['diff'] = diffs
        return out

    def config_out(self):
        """What playbooks/tootctl.yml needs to run a Rails container like web's (image, env, CA, security)."""
        web = [o for o in self.manifests['web'] if o['kind'] == 'Deployment'][0]
        spec = web['spec']['template']['spec']
        container = spec['containers'][0]
        return {'name': self.model['name'], 'namespace': self.model['namespace'], 'version': self.model['version'],
                'image': self.model['image'], 'image_pull_policy': container['imagePullPolicy'],
                'labels': self.model['labels'],
                'pod': {'securityContext': spec['securityContext'], 'imagePullSecrets': spec['imagePullSecrets'],
                        'volumes': spec['volumes'], 'volumeMounts': container['volumeMounts'],
                        'envFrom': container['envFrom'], 'containerSecurityContext': container['securityContext'],
                        'serviceAccountName': spec['serviceAccountName'],
                        'annotations': dict(self.v['config_pod_annotations'])}}

    def files(self):
        """{name: text} of the files for config_files_hosts: .env.production and the CA."""
        out = {'env.production': dotenv_text(self.env, self.v['config_files_ca_dest'])}
        if self.endpoints['ca_pem']:
            out['ca.crt'] = self.endpoints['ca_pem']
        return out
