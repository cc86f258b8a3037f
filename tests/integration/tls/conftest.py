# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the TLS tests: real PostgreSQL + PgBouncer (project CA) and Redis (public test CA, trusted by the
clients' system store), a DigitalOcean stand-in serving the project CA and those endpoints, the collection writing
the CA file and `.env.production`, and the real clients (node pg/ioredis as the streaming server, Ruby pg/redis as
Rails and Sidekiq) reading them.

The clients' system store: Python and Ruby use OpenSSL's default paths, steered by SSL_CERT_FILE = the machine's
bundle + the public test CA. node verifies against its bundled roots plus NODE_EXTRA_CA_CERTS (node's documented
behaviour); the bundled roots stand for the public ones, and the public test CA joins them the only way node
allows, in the NODE_EXTRA_CA_CERTS file, next to the database CA that the pods put there.
"""
from __future__ import annotations

import base64
import copy
import hashlib
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
MATRIX = []  # rows recorded by the matrix tests, printed at the end of the session
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
    # The API serves the project CA for every cluster of the project, Valkey included; Valkey's own certificate
    # comes from the public CA, so that CA is of no use for Redis (DigitalOcean: "does not require that you
    # download a CA certificate").
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


# How each client is given its trust, per case (see the module docstring):
#   deployed                 as in the pods: PostgreSQL against the database CA, Redis against the system store
#   redis-against-db-ca      the system store replaced by the database CA only (the old, wrong preflight)
#   db-against-system-store  PostgreSQL verified against the system store instead of the database CA
TRUST_CASES = ('deployed', 'redis-against-db-ca', 'db-against-system-store')


class Clients(object):
    """The real clients, run on an env file with the trust of a case; results cached per (client, env file, case)."""

    def __init__(self, node_path, env):
        self.node_path = node_path
        self.env = env
        self.cache = {}
        self.versions = {}

    @staticmethod
    def env_values(env_file):
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

    def _bundle(self, *files):
        """One PEM file with the certificates of `files` (NODE_EXTRA_CA_CERTS takes exactly one file)."""
        data = b''.join(open(path, 'rb').read().rstrip(b'\n') + b'\n' for path in files)
        path = os.path.join(self.env.base_dir, 'pki', 'node-extra-%s.pem' % hashlib.sha256(data).hexdigest()[:12])
        with open(path, 'wb') as handle:
            handle.write(data)
        return path

    def trust_env(self, client, env_file, case):
        """The process environment that gives `client` the trust of `case`, and what it then trusts (for the matrix)."""
        values = self.env_values(env_file)
        pki = self.env.pki
        db_ca = values['PGSSLROOTCERT']
        if client == 'node':
            # As in the pod: NODE_EXTRA_CA_CERTS is a process variable (envFrom the ConfigMap); node reads it at
            # start-up, before dotenv could set it.
            extra = {'deployed': (values['NODE_EXTRA_CA_CERTS'], pki.public_ca_file),
                     'redis-against-db-ca': (values['NODE_EXTRA_CA_CERTS'],),
                     'db-against-system-store': (pki.public_ca_file,)}[case]
            return {'NODE_EXTRA_CA_CERTS': self._bundle(*extra)}
        env = {'SSL_CERT_FILE': pki.system_bundle_file}
        if case == 'redis-against-db-ca':
            env['SSL_CERT_FILE'] = db_ca
        elif case == 'db-against-system-store':
            env['PGSSLROOTCERT'] = pki.system_bundle_file  # dotenv does not override the process environment
        return env

    def run(self, client, env_file, targets=('pg', 'redis'), case='deployed'):
        key = (client, env_file, case, tuple(targets))
        if key in self.cache:
            return self.cache[key]
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'LANG': 'C.UTF-8', 'HOME': os.environ.get('HOME', '/root'),
               'FEDIOPS_RESOLVE': json.dumps(RESOLVE)}
        env.update(self.trust_env(client, env_file, case))
        if client == 'node':
            if not self.node_path:
                pytest.fail('npm packages dotenv, pg and ioredis not found: run scripts/setup.sh (NODE_PATH)')
            env['NODE_PATH'] = self.node_path
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
def clients(tls_env):
    for tool in ('node', 'ruby'):
        if not shutil.which(tool):
            pytest.fail('%s is not installed' % tool)
    return Clients(_node_path(), tls_env)


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
def tls_check(run_playbook, tls_env):
    """Run fediops.mastodon.tls_check with the given options, the test system store as the machine's (SSL_CERT_FILE);
    returns the task result (dict)."""

    def _run(check=False, env=None, **options):
        options = dict((key, value) for key, value in options.items() if value is not None)
        result = run_playbook(TLS_CHECK_PLAY.format(args=json.dumps(options)), check=check,
                              env=env or tls_env.system_store_env())
        assert result.data is not None, result.stdout[-3000:] + result.stderr[-3000:]
        return result.result('Check')

    return _run


TLS_CHECK_MANY_PLAY = '''\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Check
      fediops.mastodon.tls_check: "{{ item | combine({'fail_on_error': false}) }}"
      loop: CASES
      register: check
'''


@pytest.fixture
def tls_check_many(run_playbook, tls_env):
    """Run fediops.mastodon.tls_check once per option dict, in one playbook (fail_on_error=false), with the test
    system store; returns the task results in order."""

    def _run(cases):
        result = run_playbook(TLS_CHECK_MANY_PLAY.replace('CASES', json.dumps(cases)), env=tls_env.system_store_env())
        assert result.data is not None, result.stdout[-3000:] + result.stderr[-3000:]
        return result.result('Check')['results']

    return _run


def pytest_terminal_summary(terminalreporter):
    for title, values in (('tls_check messages', NOTES), ('tls_check timings (s)', TIMINGS)):
        if values:
            terminalreporter.write_line('%s:' % title)
            for key, value in sorted(values.items()):
                terminalreporter.write_line('  %s: %s' % (key, round(value, 3) if isinstance(value, float) else value))
    if not MATRIX:
        return
    header = '| client | server | case | CA | name | trusts | expected | outcome | detail |'
    lines = ['TLS end-to-end matrix (project CA for PostgreSQL/PgBouncer, public test CA for Redis):', header,
             '|' + '---|' * 9]
    for row in sorted(MATRIX, key=lambda r: (r['client'], r['server'], r['case'], r['ca'], r['name'])):
        lines.append('| %(client)s | %(server)s | %(case)s | %(ca)s | %(name)s | %(trusts)s | %(expected)s | %(outcome)s | '
                     '%(detail)s |' % row)
    for line in lines:
        terminalreporter.write_line(line)
    logs = os.environ.get('FEDIOPS_TLS_MATRIX') or (
        os.path.join(os.environ['FEDIOPS_COLLECTIONS'], 'logs', 'tls-matrix.md') if os.environ.get('FEDIOPS_COLLECTIONS') else None)
    if logs and os.path.isdir(os.path.dirname(logs)):
        with open(logs, 'w', encoding='utf-8') as handle:
            handle.write('\n'.join(lines) + '\n')
        terminalreporter.write_line('matrix written to %s' % logs)
