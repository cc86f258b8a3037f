# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real PostgreSQL 15, PgBouncer and Redis 7 with TLS as on DigitalOcean, on loopback, for tests and demos.

DigitalOcean signs PostgreSQL and its PgBouncer pools with a private CA of the project (`GET /v2/databases/{id}/ca`)
and serves Valkey/Redis with Let's Encrypt certificates, publicly trusted (tests/data/mastodon/FACTS.md,
"DigitalOcean facts"). So here: PostgreSQL and PgBouncer from the "project" CA; Redis from a second, "public" CA
that only the clients' system trust store knows: `pki.system_bundle_file` = the machine's CA bundle + the public
test CA, handed to the clients as their system store (`env.system_store_env()`: SSL_CERT_FILE for Python and
Ruby/OpenSSL; node gets the public CA through NODE_EXTRA_CA_CERTS).

    env = TLSEnvironment(base_dir=None).start()    # base_dir: a fresh world-traversable directory
    env.pki.ca_file, env.pki.wrong_ca_file          # the project CA, and another project's CA (negative tests)
    env.pki.public_ca_file, env.pki.system_bundle_file  # the "public" CA of Redis; the system store with it
    env.postgres.port, env.pgbouncer.port, env.redis.port, env.password
    env.PG_NAME, env.REDIS_NAME                      # DNS names in the server certificates (resolve them
                                                     # to 127.0.0.1 yourself: libpq hostaddr, a resolver shim)
    env.stop()

Everything listens on 127.0.0.1 at ports picked at run time. PostgreSQL and PgBouncer refuse to run as
root, so they run as the Debian `postgres` system user (setpriv) from a directory under /tmp that the
user can reach; Redis runs as the caller. Keys are generated per run and deleted by stop().
"""
from __future__ import annotations

import datetime
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PG_BIN = os.environ.get('FEDIOPS_PG_BIN', '/usr/lib/postgresql/15/bin')
PGBOUNCER = shutil.which('pgbouncer') or '/usr/sbin/pgbouncer'
REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'
SERVICE_USER = os.environ.get('FEDIOPS_PG_USER', 'postgres')
# The machine's normal CA bundle (Debian's ca-certificates), the base of the test system store.
MACHINE_CA_BUNDLE = os.environ.get('FEDIOPS_MACHINE_CA_BUNDLE', '/etc/ssl/certs/ca-certificates.crt')

PG_NAME = 'db-postgresql-fra1-12345-do-user-0-0.b.db.ondigitalocean.com'
REDIS_NAME = 'db-valkey-fra1-12345-do-user-0-0.b.db.ondigitalocean.com'
WRONG_NAME = 'db-postgresql-ams3-99999-do-user-0-0.b.db.ondigitalocean.com'
DB_USER = 'doadmin'
DB_NAME = 'mastodon_production'
POOL_NAME = 'mastodon'


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_port(port, timeout=30.0, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('process exited with %s before listening on %d: %s' % (proc.returncode, port, _tail(log)))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('nothing listens on 127.0.0.1:%d after %ss: %s' % (port, timeout, _tail(log)))


def _tail(path, size=3000):
    if not path or not os.path.exists(path):
        return ''
    with open(path, 'rb') as handle:
        handle.seek(max(0, os.path.getsize(path) - size))
        return handle.read().decode('utf-8', 'replace')


class PKI(object):
    """The project's private CA (PostgreSQL, PgBouncer), another project's CA, the "public" CA (Redis, as Let's
    Encrypt on DigitalOcean), the system store that trusts the public CA, and an expired Redis certificate."""

    def __init__(self, directory):
        self.directory = directory
        self.ca = trustme.CA(organization_name='fediops test', organization_unit_name='Project CA')
        self.wrong_ca = trustme.CA(organization_name='fediops other', organization_unit_name='Other Project CA')
        self.public_ca = trustme.CA(organization_name='fediops public', organization_unit_name='Public Test Root')
        self.ca_file = self._write('ca.pem', self.ca.cert_pem.bytes())
        self.wrong_ca_file = self._write('wrong-ca.pem', self.wrong_ca.cert_pem.bytes())
        self.public_ca_file = self._write('public-ca.pem', self.public_ca.cert_pem.bytes())
        with open(MACHINE_CA_BUNDLE, 'rb') as handle:
            machine = handle.read()
        self.system_bundle_file = self._write('system-store.pem', machine.rstrip(b'\n') + b'\n' + self.public_ca.cert_pem.bytes())
        self.pg_cert_file, self.pg_key_file = self._leaf('pg', self.ca.issue_cert(PG_NAME, common_name=PG_NAME))
        self.redis_cert_file, self.redis_key_file = self._leaf(
            'redis', self.public_ca.issue_cert(REDIS_NAME, common_name=REDIS_NAME))
        self.expired_cert_file, self.expired_key_file = self._expired(REDIS_NAME, self.public_ca)

    def _write(self, name, data, mode=0o644):
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        return path

    def _leaf(self, name, leaf):
        cert = self._write('%s.crt' % name, b''.join(blob.bytes() for blob in leaf.cert_chain_pems))
        key = self._write('%s.key' % name, leaf.private_key_pem.bytes(), 0o600)
        return cert, key

    def _expired(self, name, authority):
        """A server certificate from `authority` for `name` whose validity ended yesterday."""
        ca_key = serialization.load_pem_private_key(authority.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(authority.cert_pem.bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=400))
                .not_valid_after(now - datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_file = self._write('expired.crt', cert.public_bytes(serialization.Encoding.PEM))
        key_file = self._write('expired.key', key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()), 0o600)
        return cert_file, key_file

    def ca_pem(self, wrong=False):
        return (self.wrong_ca if wrong else self.ca).cert_pem.bytes().decode('ascii')

    def system_store_env(self):
        """The environment that makes OpenSSL-based clients (Python ssl, Ruby OpenSSL) use the test system store."""
        return {'SSL_CERT_FILE': self.system_bundle_file}


class _Process(object):
    name = 'process'

    def __init__(self):
        self.proc = None
        self.port = None
        self.log = None

    def _spawn(self, cmd, log, as_service_user=False, cwd=None):
        self.log = log
        if as_service_user and os.geteuid() == 0:
            cmd = ['setpriv', '--reuid=%s' % SERVICE_USER, '--regid=%s' % SERVICE_USER, '--init-groups', '--'] + cmd
        with open(log, 'ab') as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=cwd, start_new_session=True)
        wait_port(self.port, proc=self.proc, log=log)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM if self.name != 'postgres' else signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class Postgres(_Process):
    name = 'postgres'

    def __init__(self, directory, pki, password):
        super(Postgres, self).__init__()
        self.directory = directory
        self.data = os.path.join(directory, 'data')
        self.socket_dir = directory
        self.pki = pki
        self.password = password
        self.cert_file = os.path.join(directory, 'server.crt')
        self.key_file = os.path.join(directory, 'server.key')

    def _as_user(self, cmd, **kwargs):
        if os.geteuid() == 0:
            cmd = ['setpriv', '--reuid=%s' % SERVICE_USER, '--regid=%s' % SERVICE_USER, '--init-groups', '--'] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=True, **kwargs)

    def install_cert(self, cert_file, key_file):
        shutil.copyfile(cert_file, self.cert_file)
        shutil.copyfile(key_file, self.key_file)
        os.chmod(self.key_file, 0o600)
        _chown(self.cert_file)
        _chown(self.key_file)

    def start(self):
        pwfile = os.path.join(self.directory, 'pwfile')
        with open(pwfile, 'w', encoding='utf-8') as handle:
            handle.write(self.password + '\n')
        _chown(pwfile)
        self._as_user([os.path.join(PG_BIN, 'initdb'), '-D', self.data, '-U', DB_USER, '--pwfile', pwfile,
                       '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'])
        os.unlink(pwfile)
        with open(os.path.join(self.data, 'pg_hba.conf'), 'w', encoding='utf-8') as handle:
            handle.write('local all all trust\n'
                         'hostssl all all 127.0.0.1/32 scram-sha-256\n'
                         'hostnossl all all 0.0.0.0/0 reject\n')
        self.install_cert(self.pki.pg_cert_file, self.pki.pg_key_file)
        self.port = free_port()
        options = dict(listen_addresses='127.0.0.1', port=self.port, unix_socket_directories=self.socket_dir,
                       ssl='on', ssl_cert_file=self.cert_file, ssl_key_file=self.key_file, fsync='off',
                       shared_buffers='16MB', max_connections='40', logging_collector='off',
                       full_page_writes='off', synchronous_commit='off')
        cmd = [os.path.join(PG_BIN, 'postgres'), '-D', self.data]
        for key, value in options.items():
            cmd += ['-c', '%s=%s' % (key, value)]
        self._spawn(cmd, os.path.join(self.directory, 'postgres.log'), as_service_user=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.psql('CREATE DATABASE %s' % DB_NAME)
                break
            except subprocess.CalledProcessError as exc:
                if 'starting up' not in exc.stderr or time.monotonic() > deadline:
                    raise RuntimeError('cannot create the database: %s' % exc.stderr)
                time.sleep(0.1)
        return self

    def psql(self, sql, database='postgres'):
        return self._as_user([os.path.join(PG_BIN, 'psql'), '-h', self.socket_dir, '-p', str(self.port), '-U', DB_USER,
                              '-d', database, '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql]).stdout

    def reload(self):
        """Re-read the configuration (and the server certificate files): SIGHUP, then wait for it to apply."""
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)


class PgBouncer(_Process):
    name = 'pgbouncer'

    def __init__(self, directory, pki, postgres, password):
        super(PgBouncer, self).__init__()
        self.directory = directory
        self.pki = pki
        self.postgres = postgres
        self.password = password

    def start(self):
        self.port = free_port()
        userlist = os.path.join(self.directory, 'userlist.txt')
        with open(userlist, 'w', encoding='utf-8') as handle:
            handle.write('"%s" "%s"\n' % (DB_USER, self.password))
        os.chmod(userlist, 0o600)
        cert = os.path.join(self.directory, 'server.crt')
        key = os.path.join(self.directory, 'server.key')
        shutil.copyfile(self.pki.pg_cert_file, cert)
        shutil.copyfile(self.pki.pg_key_file, key)
        os.chmod(key, 0o600)
        ini = os.path.join(self.directory, 'pgbouncer.ini')
        with open(ini, 'w', encoding='utf-8') as handle:
            handle.write('[databases]\n'
                         '%(pool)s = host=127.0.0.1 port=%(pg)d dbname=%(db)s\n'
                         '[pgbouncer]\n'
                         'listen_addr = 127.0.0.1\n'
                         'listen_port = %(port)d\n'
                         'unix_socket_dir =\n'
                         'auth_type = scram-sha-256\n'
                         'auth_file = %(userlist)s\n'
                         'pool_mode = transaction\n'
                         'default_pool_size = 5\n'
                         'max_client_conn = 50\n'
                         'ignore_startup_parameters = extra_float_digits\n'
                         'client_tls_sslmode = require\n'
                         'client_tls_cert_file = %(cert)s\n'
                         'client_tls_key_file = %(key)s\n'
                         'server_tls_sslmode = verify-ca\n'
                         'server_tls_ca_file = %(ca)s\n'
                         'pidfile = %(dir)s/pgbouncer.pid\n'
                         'logfile = %(dir)s/pgbouncer.log\n'
                         % dict(pool=POOL_NAME, pg=self.postgres.port, db=DB_NAME, port=self.port, userlist=userlist,
                                cert=cert, key=key, ca=self.pki.ca_file, dir=self.directory))
        for path in (userlist, cert, key, ini):
            _chown(path)
        self._spawn([PGBOUNCER, ini], os.path.join(self.directory, 'pgbouncer.out'), as_service_user=True)
        self.log = os.path.join(self.directory, 'pgbouncer.log')
        return self


class Redis(_Process):
    name = 'redis'

    def __init__(self, directory, pki, password, cert_file=None, key_file=None):
        super(Redis, self).__init__()
        self.directory = directory
        self.pki = pki
        self.password = password
        self.cert_file = cert_file or pki.redis_cert_file
        self.key_file = key_file or pki.redis_key_file

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_port()
        conf = os.path.join(self.directory, 'redis.conf')
        with open(conf, 'w', encoding='utf-8') as handle:
            handle.write('bind 127.0.0.1\nport 0\ntls-port %d\n'
                         'tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n'
                         'requirepass %s\nsave ""\nappendonly no\ndir %s\ndaemonize no\nlogfile ""\n'
                         % (self.port, self.cert_file, self.key_file, self.pki.public_ca_file, self.password, self.directory))
        os.chmod(conf, 0o600)
        self._spawn([REDIS_SERVER, conf], os.path.join(self.directory, 'redis.log'))
        return self


def _chown(path):
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class TLSEnvironment(object):
    """PostgreSQL (ssl=on) and PgBouncer (transaction pool, TLS) from the project CA; Redis (TLS only) from the
    public test CA."""

    PG_NAME = PG_NAME
    REDIS_NAME = REDIS_NAME
    WRONG_NAME = WRONG_NAME
    DB_USER = DB_USER
    DB_NAME = DB_NAME
    POOL_NAME = POOL_NAME

    def __init__(self, base_dir=None):
        self.base_dir = base_dir or tempfile.mkdtemp(prefix='fediops-tls-', dir='/tmp')
        os.chmod(self.base_dir, 0o755)
        self.password = 'tls-' + secrets.token_hex(12)
        self.pki = None
        self.postgres = self.pgbouncer = self.redis = self.expired_redis = None
        self._started = []

    def _dir(self, name, service_user=False, mode=0o700):
        path = os.path.join(self.base_dir, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        if service_user:
            _chown(path)
        return path

    def start(self):
        try:
            self.pki = PKI(self._dir('pki', mode=0o755))
            self.postgres = Postgres(self._dir('postgres', True), self.pki, self.password)
            self._started.append(self.postgres)
            self.postgres.start()
            self.pgbouncer = PgBouncer(self._dir('pgbouncer', True), self.pki, self.postgres, self.password)
            self._started.append(self.pgbouncer)
            self.pgbouncer.start()
            self.redis = Redis(self._dir('redis'), self.pki, self.password)
            self._started.append(self.redis)
            self.redis.start()
        except Exception:
            self.stop()
            raise
        return self

    def start_expired_redis(self):
        """A second Redis whose server certificate (right CA, right name) has expired."""
        if self.expired_redis is None:
            self.expired_redis = Redis(self._dir('redis-expired'), self.pki, self.password,
                                       self.pki.expired_cert_file, self.pki.expired_key_file)
            self._started.append(self.expired_redis)
            self.expired_redis.start()
        return self.expired_redis

    @property
    def redis_url(self):
        return 'rediss://default:%s@%s:%d' % (self.password, REDIS_NAME, self.redis.port)

    def system_store_env(self):
        return self.pki.system_store_env()

    def client_context(self, wrong_ca=False):
        context = ssl.create_default_context(cafile=self.pki.wrong_ca_file if wrong_ca else self.pki.ca_file)
        return context

    def describe(self):
        return dict(postgres=self.postgres.port, pgbouncer=self.pgbouncer.port, redis=self.redis.port,
                    pg_name=PG_NAME, redis_name=REDIS_NAME, ca_file=self.pki.ca_file,
                    public_ca_file=self.pki.public_ca_file, system_bundle_file=self.pki.system_bundle_file,
                    base_dir=self.base_dir)

    def stop(self):
        for proc in reversed(self._started):
            try:
                proc.stop()
            except Exception:  # pylint: disable=broad-except
                pass
        self._started = []
        shutil.rmtree(self.base_dir, ignore_errors=True)


if __name__ == '__main__':
    import json
    ENV = TLSEnvironment().start()
    print(json.dumps(ENV.describe()), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        ENV.stop()
