# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the migration tests (fixtures in conftest.py): a real PostgreSQL 15 (tests/support/tlsenv.py, TLS from the project CA),
an application role that is not a superuser (as DigitalOcean's database users), one database per case, and
the Mastodon-shaped Rails tree (mastodon_tree/, see its README.md) run with Debian's ActiveRecord 6.1.

`job.run(tree, container, database)` runs a migration container exactly as given (command and env from
`_migrations.job_container()`), adding only what the Job gets from elsewhere: the working directory (the
image's /opt/mastodon), the direct endpoint's DB_* as the application's user (the db-direct Secret), and
DB_SSLMODE/PGSSLROOTCERT (the application's ConfigMap and the CA volume). PGHOSTADDR makes libpq reach
the DigitalOcean-style host name on 127.0.0.1 while it verifies the certificate against that name.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.join(HERE, 'mastodon_tree')
SUPPORT = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

import tlsenv  # noqa: E402  pylint: disable=wrong-import-position

# The suite runs in a collection copy .../ansible_collections/fediops/mastodon: the tests import
# `_migrations` from there.
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT)))
if os.path.basename(os.path.dirname(os.path.dirname(COLLECTION_ROOT))) == 'ansible_collections' and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

APP_USER = 'mastodon'
# Mastodon 4.4 and later force db/post_migrate onto the paths while loading the schema
# (lib/active_record/database_tasks_extensions.rb, mastodon/mastodon#34089); 4.3 and earlier do not.
SCHEMA_LOAD_FIX = 'Mastodon::Database.add_post_migrate_path_to_rails(force: true)\n'
MIGRATED = re.compile(r'^== (\d{14}) \w+: migrated', re.MULTILINE)
TIMINGS = []  # (case, step, seconds, exit code, migrations run)


def _versions(directory):
    return sorted(name.split('_', 1)[0] for name in os.listdir(directory) if name.endswith('.rb'))


PRE_VERSIONS = _versions(os.path.join(TREE, 'db', 'migrate'))
POST_VERSIONS = _versions(os.path.join(TREE, 'db', 'post_migrate'))


class Database(object):
    """One database of the test server, created as DigitalOcean's API does (owned by the admin), in which
    the application's user may create tables."""

    def __init__(self, env, name):
        self.env = env
        self.name = name

    def sql(self, statement):
        return self.env.postgres.psql(statement, database=self.name)

    def psql_script(self, script, **variables):
        """Run a psql script as the admin, with psql variables (`-v name=value`)."""
        postgres = self.env.postgres
        command = [os.path.join(tlsenv.PG_BIN, 'psql'), '-h', postgres.socket_dir, '-p', str(postgres.port),
                   '-U', tlsenv.DB_USER, '-d', self.name, '-v', 'ON_ERROR_STOP=1']
        for name, value in variables.items():
            command += ['-v', '%s=%s' % (name, value)]
        return postgres._as_user(command, input=script)  # pylint: disable=protected-access

    def versions(self):
        if not self.sql("SELECT to_regclass('public.schema_migrations') IS NOT NULL").strip() == 't':
            return []
        return self.sql('SELECT version FROM schema_migrations ORDER BY version').split()

    def columns(self, table):
        return self.sql("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND table_name = '%s' ORDER BY column_name" % table).split()

    def schema(self):
        """Every column of the public schema with its type, nullability and default, and every index."""
        columns = self.sql("SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') "
                           "FROM information_schema.columns WHERE table_schema = 'public' "
                           "AND table_name NOT IN ('schema_migrations', 'ar_internal_metadata') ORDER BY 1, 2")
        indexes = self.sql("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        return columns.splitlines() + indexes.splitlines()

    def checksum(self):
        """md5 of every row of every table of the public schema (schema_migrations included), table by table."""
        out = {}
        for table in sorted(self.owners()):
            out[table] = self.sql('SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM %s t' % table).strip()
        return out

    def owners(self):
        return dict(line.split('|') for line in self.sql(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'").splitlines())


def encryption_keys():
    """A new set of ActiveRecord encryption keys, as the plan generates them (the kept secrets)."""
    return {'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY': secrets.token_hex(16),
            'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT': secrets.token_hex(16),
            'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY': secrets.token_hex(16)}


class JobRunner(object):
    def __init__(self, env, password):
        self.env = env
        self.password = password
        # The instance's kept secrets, which the Job gets from the env Secret (envFrom): the tree's
        # config/initializers/active_record_encryption.rb aborts without them, as Mastodon's does.
        self.keys = encryption_keys()

    def connection_env(self, database, user=APP_USER, password=None):
        return {
            'DB_HOST': tlsenv.PG_NAME,
            'DB_PORT': str(self.env.postgres.port),  # the direct endpoint, not PgBouncer
            'DB_NAME': database.name,
            'DB_USER': user,
            'DB_PASS': self.password if password is None else password,
            'DB_SSLMODE': 'verify-full',
            'PGSSLROOTCERT': self.env.pki.ca_file,
            'PGHOSTADDR': '127.0.0.1',
        }

    def run(self, tree, container, database, case='', step='', user=APP_USER, password=None, extra_env=None):
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOME': os.environ.get('HOME', '/root'),
               'LANG': 'C.UTF-8'}
        env.update(self.keys)
        env.update(container['env'])
        env.update(self.connection_env(database, user, password))
        env.update(extra_env or {})
        started = time.monotonic()
        completed = subprocess.run(container['command'], cwd=tree, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
        ran = MIGRATED.findall(completed.stdout)
        TIMINGS.append((case, step, time.monotonic() - started, completed.returncode, ran))
        return JobResult(completed.returncode, completed.stdout, ran)


class JobResult(object):
    def __init__(self, returncode, output, migrated):
        self.returncode = returncode
        self.output = output
        self.migrated = migrated  # versions of the migrations run, in order

    def __repr__(self):
        return 'exit %s, migrated %s, output:\n%s' % (self.returncode, self.migrated, self.output[-4000:])
