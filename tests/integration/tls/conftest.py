# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the TLS tests: real PostgreSQL + PgBouncer + Redis behind a private CA, a DigitalOcean stand-in
serving that CA and those endpoints, the collection writing the CA file and `.env.production`, and the real
clients (node pg/ioredis as the streaming server, Ruby pg/redis as Rails and Sidekiq) reading them.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import uuid

import pytest
import trustme

HERE = os.path.dirname(os.path.abspath(__file__))
SUPPORT = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

import tlsenv  # noqa: E402  pylint: disable=wrong-import-position
from do_standin import StandinServer, generate  # noqa: E402  pylint: disable=wrong-import-position

WRONG_REDIS_NAME = 'db-valkey-ams3-99999-do-user-0-0.b.db.ondigitalocean.com'
RESOLVE = {name: '127.0.0.1' for name in (tlsenv.PG_NAME, tlsenv.REDIS_NAME, tlsenv.WRONG_NAME, WRONG_REDIS_NAME)}
MATRIX = []  # rows recorded by test_matrix, printed at the end of the session
NOTES = {}  # tls_check error messages by case
TIMINGS = {}  # seconds by case


def _node_path():
    candidates = [p for p in os.environ.get('NODE_PATH', '').split(os.pathsep) if p]
    cache = os.environ.get('FEDIOPS_CACHE', os.path.expanduser('~/.cache/fediops-mastodon'))
    candidates.append(os.path.join(cache, 'node', 'node_modules'))
    for path in candidates:
        if all(os.path.isdir(os.path.join(path, name)) for name in ('dotenv', 'pg', 'ioredis')):
            return path
    return None


@pytest.fixture(scope='session')
def tls_env():
    """PostgreSQL 15 (ssl=on), PgBouncer (transaction pool, TLS) and Redis 7 (TLS only) on loopback."""
    missing = [path for path in (os.path.join(tlsenv.PG_BIN, 'postgres'), tlsenv.PGBOUNCER, tlsenv.REDIS_SERVER)
               if not os.path.exists(path)]
    if missing:
        pytest.fail('servers missing (apt-get install postgresql pgbouncer redis-server): %s' % ', '.join(missing))
    env = tlsenv.TLSEnvironment().start()
    try:
        yield env
    finally:
        env.stop()


def _connection(scheme, user, password, host, port, database):
    query = '?sslmode=require' if scheme == 'postgresql' else ''
    uri = '%s://%s:%s@%s:%d/%s%s' % (scheme, user, password, host, port, database, query)
    return dict(uri=uri, database=database, host=host, port=port, user=user, password=password, ssl=True)


def standin_fixtures(env):
    """The stand-in's generated fixtures plus three clusters pointing at the real servers of `env`.

    tls-pg (PostgreSQL, pool `mastodon` = PgBouncer) and tls-valkey share the project CA that signed the
    servers' certificates; tls-other-pg is a cluster of another project (another CA).
    """
    fixtures = generate()
    template_pg = next(c for c in fixtures['clusters'] if c['engine'] == 'pg')
    template_kv = next(c for c in fixtures['clusters'] if c['engine'] != 'pg')
    password = env.password

    def pg_cluster(name):
        cluster = copy.deepcopy(template_pg)
        for key in ('standby_connection', 'standby_private_connection'):
            cluster.pop(key, None)
        conn = _connection('postgresql', tlsenv.DB_USER, password, tlsenv.PG_NAME, env.postgres.port, tlsenv.DB_NAME)
        cluster.update(id=str(uuid.uuid4()), name=name, num_nodes=1, tags=['tls'], connection=conn,
                       private_connection=dict(conn), users=[dict(name=tlsenv.DB_USER, role='primary', password=password)],
                       db_names=['defaultdb', tlsenv.DB_NAME])
        pool_conn = _connection('postgresql', tlsenv.DB_USER, password, tlsenv.PG_NAME, env.pgbouncer.port,
                                tlsenv.POOL_NAME)
        pools = [dict(name=tlsenv.POOL_NAME, mode='transaction', size=5, db=tlsenv.DB_NAME, user=tlsenv.DB_USER,
                      connection=pool_conn, private_connection=dict(pool_conn))]
        return cluster, pools

    valkey = copy.deepcopy(template_kv)
    conn = _connection('rediss', 'default', password, tlsenv.REDIS_NAME, env.redis.port, '')
    valkey.update(id=str(uuid.uuid4()), name='tls-valkey', tags=['tls'], connection=conn, private_connection=dict(conn),
                  users=[dict(name='default', role='primary', password=password)])
    right = base64.b64encode(env.pki.ca_pem().encode('ascii')).decode('ascii')
    wrong = base64.b64encode(env.pki.ca_pem(wrong=True).encode('ascii')).decode('ascii')
    for (cluster, pools), ca in ((pg_cluster('tls-pg'), right), (pg_cluster('tls-other-pg'), wrong)):
        fixtures['clusters'].append(cluster)
        fixtures['pools'][cluster['id']] = pools
        fixtures['cas'][cluster['id']] = ca
    fixtures['clusters'].append(valkey)
    fixtures['pools'][valkey['id']] = []
    fixtures['cas'][valkey['id']] = right
    return fixtures


@pytest.fixture(scope='session')
def tls_standin(tls_env, tmp_path_factory):
    """The DigitalOcean API stand-in serving the test environment's CA and endpoints (HTTPS, own API CA)."""
    directory = tmp_path_factory.mktemp('tls-standin')
    authority = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert('127.0.0.1', 'localhost').configure_cert(context)
    api_ca = str(directory / 'api-ca.pem')
    authority.cert_pem.write_to_path(api_ca)
    token = 'standin-' + secrets.token_hex(16)
    server = StandinServer(standin_fixtures(tls_env), token, context).start()
    try:
        yield dict(base_url=server.base_url, token=token, ca_file=api_ca, server=server)
    finally:
        server.stop()


DEPLOY_PLAY = '''\
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/fediops.mastodon.digitalocean:
      api_base_url: "{{ standin_url }}"
      ca_path: "{{ standin_ca }}"
      timeout: 10
  tasks:
    - name: PostgreSQL cluster
      fediops.mastodon.do_database_info:
        cluster_name: tls-pg
        include_passwords: true
      register: pg
      no_log: true

    - name: Valkey cluster
      fediops.mastodon.do_database_info:
        cluster_name: tls-valkey
        include_passwords: true
      register: kv
      no_log: true

    - name: Install the database CA
      fediops.mastodon.do_database_ca:
        cluster_name: "{{ ca_cluster }}"
        dest: "{{ dest }}/do-ca.pem"

    - name: Write the env files
      fediops.mastodon.mastodon_env:
        dest: "{{ dest }}/{{ item.file }}"
        pgbouncer: "{{ item.pgbouncer }}"
        env: "{{ common | combine(item.env) }}"
      loop:
        - file: pool.env
          pgbouncer: true
          env:
            DB_HOST: "{{ host_override | default(pool.connection.host, true) }}"
            DB_PORT: "{{ pool.connection.port }}"
            DB_NAME: "{{ pool.name }}"
            PREPARED_STATEMENTS: false
        - file: direct.env
          pgbouncer: false
          env:
            DB_HOST: "{{ host_override | default(pg.cluster.connection.host, true) }}"
            DB_PORT: "{{ pg.cluster.connection.port }}"
            DB_NAME: "{{ pg.cluster.connection.database }}"
      loop_control:
        label: "{{ item.file }}"
      no_log: true
      vars:
        pool: "{{ pg.cluster.pools | selectattr('mode', 'eq', 'transaction') | first }}"
        redis_host: "{{ redis_host_override | default(kv.cluster.connection.host, true) }}"
        common:
          LOCAL_DOMAIN: tls.example.social
          DB_USER: "{{ pg.cluster.connection.user }}"
          DB_PASS: "{{ pg.cluster.passwords.connection }}"
          DB_SSLMODE: verify-full
          PGSSLROOTCERT: "{{ dest }}/do-ca.pem"
          NODE_EXTRA_CA_CERTS: "{{ dest }}/do-ca.pem"
          REDIS_URL: "rediss://{{ kv.cluster.connection.user }}:{{ kv.cluster.passwords.connection }}@{{ redis_host }}:{{ kv.cluster.connection.port }}"
          REDIS_DRIVER: ruby
'''


class Deployments(object):
    """Runs the collection once per (ca, name) variant and caches where it wrote the files."""

    def __init__(self, standin, base_dir):
        self.standin = standin
        self.base_dir = base_dir
        self.cache = {}

    def get(self, run_playbook, ca='right', name='right'):
        key = (ca, name)
        if key not in self.cache:
            dest = os.path.join(self.base_dir, 'deploy-%s-ca-%s-name' % key)
            os.makedirs(dest, exist_ok=True)
            extra = dict(standin_url=self.standin['base_url'], standin_ca=self.standin['ca_file'], dest=dest,
                         ca_cluster='tls-pg' if ca == 'right' else 'tls-other-pg',
                         host_override=tlsenv.WRONG_NAME if name == 'wrong' else '',
                         redis_host_override=WRONG_REDIS_NAME if name == 'wrong' else '')
            result = run_playbook(DEPLOY_PLAY, extra_vars=extra,
                                  env=dict(DIGITALOCEAN_ACCESS_TOKEN=self.standin['token']))
            assert result.returncode == 0, 'the collection failed to write the files:\n%s\n%s' % (
                result.stdout[-6000:], result.stderr[-3000:])
            self.cache[key] = dest
        return self.cache[key]


@pytest.fixture(scope='session')
def _deployments(tls_standin, tls_env):
    directory = os.path.join(tls_env.base_dir, 'deployments')
    os.makedirs(directory, exist_ok=True)
    return Deployments(tls_standin, directory)


@pytest.fixture
def deployment(_deployments, run_playbook):
    """deployment(ca='right'|'wrong', name='right'|'wrong') -> directory with do-ca.pem, pool.env, direct.env."""
    return lambda ca='right', name='right': _deployments.get(run_playbook, ca, name)


class Clients(object):
    """The real clients, run on an env file; results cached per (client, env file)."""

    def __init__(self, node_path):
        self.node_path = node_path
        self.cache = {}
        self.versions = {}

    @staticmethod
    def _env_values(env_file):
        values = {}
        with open(env_file, encoding='utf-8') as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith('#') and '=' in line:
                    key, value = line.split('=', 1)
                    if value[:1] in ('"', "'") and value[-1:] == value[:1]:
                        value = value[1:-1]
                    values[key.replace('export ', '').strip()] = value
        return values

    def run(self, client, env_file, targets=('pg', 'redis')):
        key = (client, env_file)
        if key in self.cache:
            return self.cache[key]
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'LANG': 'C.UTF-8', 'HOME': os.environ.get('HOME', '/root'),
               'FEDIOPS_RESOLVE': json.dumps(RESOLVE)}
        if client == 'node':
            if not self.node_path:
                pytest.fail('npm packages dotenv, pg and ioredis not found: run scripts/setup.sh (NODE_PATH)')
            env['NODE_PATH'] = self.node_path
            # As in the pod: NODE_EXTRA_CA_CERTS is a process variable (envFrom the ConfigMap); node reads it
            # at start-up, before dotenv could set it.
            env['NODE_EXTRA_CA_CERTS'] = self._env_values(env_file)['NODE_EXTRA_CA_CERTS']
            cmd = ['node', os.path.join(HERE, 'check_node.js'), env_file] + list(targets)
        else:
            env['PGHOSTADDR'] = '127.0.0.1'  # libpq connects here and verifies the certificate against DB_HOST
            cmd = ['ruby', os.path.join(HERE, 'check_ruby.rb'), env_file] + list(targets)
        completed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
        assert completed.returncode == 0, '%s checker crashed:\n%s\n%s' % (client, completed.stdout, completed.stderr)
        data = json.loads(completed.stdout.strip().splitlines()[-1])
        self.versions[client] = data['version']
        self.cache[key] = data['results']
        return data['results']


@pytest.fixture(scope='session')
def clients():
    for tool in ('node', 'ruby'):
        if not shutil.which(tool):
            pytest.fail('%s is not installed' % tool)
    return Clients(_node_path())


TLS_CHECK_PLAY = '''\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Check
      fediops.mastodon.tls_check: {args}
      register: check
      ignore_errors: true
'''


@pytest.fixture
def tls_check(run_playbook):
    """Run fediops.mastodon.tls_check with the given options; returns the task result (dict)."""

    def _run(check=False, **options):
        result = run_playbook(TLS_CHECK_PLAY.format(args=json.dumps(options)), check=check)
        assert result.data is not None, result.stdout[-3000:] + result.stderr[-3000:]
        return result.result('Check')

    return _run


def pytest_terminal_summary(terminalreporter):
    for title, values in (('tls_check messages', NOTES), ('tls_check timings (s)', TIMINGS)):
        if values:
            terminalreporter.write_line('%s:' % title)
            for key, value in sorted(values.items()):
                terminalreporter.write_line('  %s: %s' % (key, round(value, 3) if isinstance(value, float) else value))
    if not MATRIX:
        return
    header = '| client | server | CA | name | expected | outcome | detail |'
    lines = ['TLS end-to-end matrix (through do_database_ca + mastodon_env):', header,
             '|' + '---|' * 7]
    for row in sorted(MATRIX, key=lambda r: (r['client'], r['server'], r['ca'], r['name'])):
        lines.append('| %(client)s | %(server)s | %(ca)s | %(name)s | %(expected)s | %(outcome)s | %(detail)s |' % row)
    for line in lines:
        terminalreporter.write_line(line)
    logs = os.environ.get('FEDIOPS_TLS_MATRIX') or (
        os.path.join(os.environ['FEDIOPS_COLLECTIONS'], 'logs', 'tls-matrix.md') if os.environ.get('FEDIOPS_COLLECTIONS') else None)
    if logs and os.path.isdir(os.path.dirname(logs)):
        with open(logs, 'w', encoding='utf-8') as handle:
            handle.write('\n'.join(lines) + '\n')
        terminalreporter.write_line('matrix written to %s' % logs)
