# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The PostgreSQL and Redis endpoints: from the DigitalOcean API or from the explicit variables.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

from ansible_collections.fediops.mastodon.plugins.module_utils import _digitalocean as do
from ansible_collections.fediops.mastodon.plugins.module_utils import _x509
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.state import catching, concurrently
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError


TOKEN_VARIABLE = 'config_do_api_token'
_TOKEN_WHERE = 'config_do_api_token (or DIGITALOCEAN_ACCESS_TOKEN)'


def do_error(exc, variable):
    """A DigitalOceanError as the ConfigError of the role variable at fault: the token for 401/403 (wrong, revoked,
    or without the scope), the base URL and the CA bundle for their own problems (the client names its module
    options api_base_url/ca_path/api_token, which the roles call config_do_*), else `variable`."""
    text = exc.args[0] if exc.args else str(exc)
    status = getattr(exc, 'status', None)
    if status in (401, 403) or text.startswith('api_token'):
        text = text.replace('check api_token', 'check ' + _TOKEN_WHERE).replace('the api_token lacks',
                                                                                'the token of %s lacks' % _TOKEN_WHERE)
        if text.startswith('api_token is missing'):
            text = 'is missing: set %s' % _TOKEN_WHERE
        return ConfigError(TOKEN_VARIABLE, text)
    if text.startswith('api_base_url '):
        return ConfigError('config_do_api_base_url', text[len('api_base_url '):])
    if text.startswith('ca_path '):
        return ConfigError('config_do_ca_path', text[len('ca_path '):].replace('ca_path', 'config_do_ca_path'))
    if 'TLS error' in text:
        return ConfigError('config_do_ca_path', text.replace('(set ca_path or validate_certs)',
                                                             '(set config_do_ca_path, the CA bundle that signs the API '
                                                             'server, or config_do_validate_certs)'))
    if status is None and 'failed' in text:  # no answer at all: the address is the suspect
        return ConfigError('config_do_api_base_url', text)
    if status == 404 and 'get CA of' in text:
        return ConfigError('config_do_database_cluster', text + ' (the cluster has no CA to download: is it a '
                                                                'PostgreSQL cluster? or give the CA in config_db_ca_pem)')
    return ConfigError(variable, text)


def do_endpoints(v, client, kube_server=None):
    """The PostgreSQL and Redis endpoints from the DigitalOcean API (as roles/config did with do_database_info):
    {'db': {...}, 'redis_url': str, 'ca_pem': str, 'cluster': <the PostgreSQL cluster>}. `client` may be a
    callable that makes the client (its errors are mapped to the variables too)."""
    try:
        if callable(client) and not hasattr(client, 'databases'):
            client = client()
        return _do_endpoints(v, client, kube_server)
    except do.DigitalOceanError as exc:
        raise PlanError([do_error(exc, 'config_do_database_cluster')], 'DigitalOcean look-up failed')


def _named(client, listed, v, variable):
    """The cluster of `variable` in the account's list; PlanError naming the variable."""
    try:
        return do.find_cluster_by_name(client, v[variable], listed)
    except do.DigitalOceanError as exc:
        raise PlanError([do_error(exc, variable)], 'DigitalOcean look-up failed')


def _answer(found, key):
    """One answer of the concurrent look-ups: PlanError as it is, a DigitalOceanError as the ConfigError of the
    database cluster (as a sequential look-up reported it)."""
    value = found.get(key)
    if isinstance(value, do.DigitalOceanError):
        raise PlanError([do_error(value, 'config_do_database_cluster')], 'DigitalOcean look-up failed')
    if isinstance(value, PlanError):
        raise value
    return value


def _project_ca(client, cluster):
    """The PostgreSQL cluster's CA as PEM (a DigitalOceanError left to do_error, which knows the CA's 404)."""
    try:
        return _x509.load_ca_from_base64(client.database_ca(cluster['id']), what='the CA of %s' % cluster.get('name'))[0]
    except _x509.X509Error as exc:
        raise PlanError([ConfigError('config_do_database_cluster', str(exc))], 'DigitalOcean look-up failed')


def _do_endpoints(v, client, kube_server=None):
    key = 'private_connection' if v['config_do_private_network'] else 'connection'
    # One list of the account's clusters names every cluster the variables ask for; what each then needs (pools,
    # CA, trusted sources) is asked at the same time: each is a round trip to api.digitalocean.com.
    try:
        listed = client.databases()
    except do.DigitalOceanError as exc:
        raise PlanError([do_error(exc, 'config_do_database_cluster')], 'DigitalOcean look-up failed')
    cluster = _named(client, listed, v, 'config_do_database_cluster')
    clusters = [('config_do_database_cluster', cluster)]
    if v['config_do_redis_cluster']:
        redis = _named(client, listed, v, 'config_do_redis_cluster')
        try:
            redis_url = do.redis_url(redis, private=v['config_do_private_network'])
        except do.DigitalOceanError as exc:
            raise PlanError([do_error(exc, 'config_do_redis_cluster')], 'DigitalOcean look-up failed')
        clusters.append(('config_do_redis_cluster', redis))
    else:
        redis_url = v['config_redis_url']
    search = opensearch_cluster(v, client, listed) if v.get('config_do_opensearch_cluster') else None
    if search is not None:
        clusters.append(('config_do_opensearch_cluster', search))
    errors = (do.DigitalOceanError, PlanError)
    calls = {}
    if cluster.get('engine') in do.POOL_ENGINES:
        calls['pools'] = catching(errors, client.database_pools, cluster['id'])
    if not v['config_db_ca_pem']:
        calls['ca'] = catching(errors, _project_ca, client, cluster)
    if search is not None and not v.get('config_es_ca_pem'):
        calls['es_ca'] = catching(errors, cluster_ca, client, search, 'config_do_opensearch_cluster')
    if v['config_kubernetes']:
        for variable, database in clusters:
            calls['rules ' + variable] = catching(errors, client.database_firewall_rules, database['id'])
    found = concurrently(calls)

    pools = _answer(found, 'pools') or []
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
    # Migrations connect directly but as the APPLICATION's user (docs/dev/ARCHITECTURE.md section 6): never the admin.
    db.update(direct_host=direct.get('host'), direct_port=int(direct.get('port') or 25060), direct_user=db['user'],
              direct_password=users.get(db['user']) or db['password'])
    ca_pem = v['config_db_ca_pem'] or _answer(found, 'ca')
    es_ca_pem = v.get('config_es_ca_pem') or (_answer(found, 'es_ca') if search is not None else '') or ''
    warnings = []
    if v['config_kubernetes']:
        rules = dict((variable, _answer(found, 'rules ' + variable)) for variable, dummy in clusters)
        warnings = trusted_sources(v, clusters, rules, kube_server)
    return {'db': db, 'redis_url': redis_url, 'ca_pem': ca_pem, 'cluster': cluster, 'warnings': warnings,
            'es_ca_pem': es_ca_pem}


def opensearch_cluster(v, client, listed=None):
    """The managed OpenSearch cluster of config_do_opensearch_cluster (engine opensearch, database_cluster.yml)."""
    name = v['config_do_opensearch_cluster']
    try:
        search = do.find_cluster_by_name(client, name, listed)
    except do.DigitalOceanError as exc:
        raise PlanError([ConfigError('config_do_opensearch_cluster', exc.args[0] if exc.args else str(exc))],
                        'DigitalOcean look-up failed')
    if search.get('engine') != 'opensearch':
        raise PlanError([ConfigError('config_do_opensearch_cluster', 'database cluster %r is engine %s, not opensearch'
                                     % (name, search.get('engine')))], 'DigitalOcean look-up failed')
    return search


def cluster_ca(client, cluster, variable):
    """The project CA that signs a managed database's certificate (GET /v2/databases/{uuid}/ca), as PEM."""
    try:
        return _x509.load_ca_from_base64(client.database_ca(cluster['id']), what='the CA of %s' % cluster.get('name'))[0]
    except (_x509.X509Error, do.DigitalOceanError) as exc:
        raise PlanError([ConfigError(variable, str(exc))], 'DigitalOcean look-up failed')


def trusted_sources(v, clusters, rules, kube_server):
    """Warnings; PlanError naming each database whose trusted sources (`rules`: {variable: firewall rules}) do not
    admit the Kubernetes cluster the applications run in: they could not connect (reference README, DigitalOcean
    facts)."""
    cluster_id = v['config_do_kubernetes_cluster_id'] or do.kubernetes_cluster_id_from_server(kube_server)
    errors, warnings = [], []
    for variable, database in clusters:
        problem = do.trusted_sources_problem(database.get('name'), rules[variable], cluster_id,
                                             database_id=database['id'])
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
    return {'db': db, 'redis_url': v['config_redis_url'], 'ca_pem': v['config_db_ca_pem'], 'es_ca_pem': v['config_es_ca_pem']}


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
