# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the migration tests (helpers and what they model: migration_jobs.py)."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from migration_jobs import (  # noqa: E402  pylint: disable=wrong-import-position
    APP_USER, SCHEMA_LOAD_FIX, TIMINGS, TREE, Database, JobRunner, tlsenv)


@pytest.fixture(scope='session')
def migrations_pg():
    """PostgreSQL 15 with TLS (plus the PgBouncer and Redis of tlsenv, unused here) and the application role."""
    if not os.path.exists(os.path.join(tlsenv.PG_BIN, 'postgres')):
        pytest.fail('PostgreSQL 15 is missing (apt-get install postgresql): %s' % tlsenv.PG_BIN)
    env = tlsenv.TLSEnvironment().start()
    password = 'app-' + secrets.token_hex(12)
    # DigitalOcean's database users: a login role without superuser, createdb or createrole.
    env.postgres.psql("CREATE ROLE %s LOGIN PASSWORD '%s' NOSUPERUSER NOCREATEDB NOCREATEROLE" % (APP_USER, password))
    try:
        yield JobRunner(env, password)
    finally:
        env.stop()


@pytest.fixture
def database(migrations_pg, request):
    """A new, empty database for the test (named after it), as `POST /v2/databases/{id}/dbs` makes one: owned
    by the admin; the application's user gets CREATE on its public schema (PostgreSQL 15 no longer grants it
    to every role)."""
    name = re.sub(r'[^a-z0-9_]+', '_', request.node.name.lower())[:55]
    migrations_pg.env.postgres.psql('DROP DATABASE IF EXISTS %s' % name)
    migrations_pg.env.postgres.psql('CREATE DATABASE %s' % name)
    db = Database(migrations_pg.env, name)
    db.sql('GRANT CREATE, USAGE ON SCHEMA public TO %s' % APP_USER)
    return db


def _tree(tmp_path_factory, name, schema_load_fix):
    for tool in ('ruby', 'bundle'):
        if not shutil.which(tool):
            pytest.fail('%s is missing (apt-get install ruby bundler ruby-activerecord ruby-railties ruby-pg)' % tool)
    tree = str(tmp_path_factory.mktemp(name) / 'mastodon')
    shutil.copytree(TREE, tree)
    if not schema_load_fix:
        path = os.path.join(tree, 'lib', 'active_record', 'database_tasks_extensions.rb')
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        assert SCHEMA_LOAD_FIX in text
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(text.replace(SCHEMA_LOAD_FIX, ''))
    completed = subprocess.run(['bundle', 'lock', '--local'], cwd=tree, capture_output=True, text=True, check=False,
                               timeout=120)
    assert completed.returncode == 0, 'bundle lock --local failed (Debian gems missing?):\n%s%s' % (
        completed.stdout, completed.stderr)
    return tree


@pytest.fixture(scope='session')
def tree_current(tmp_path_factory):
    """The tree as Mastodon 4.5/4.6 (with the schema-load fix of 4.4)."""
    return _tree(tmp_path_factory, 'mastodon-4.6', schema_load_fix=True)


@pytest.fixture(scope='session')
def tree_4_3(tmp_path_factory):
    """The same tree as Mastodon 4.3 and earlier: schema load without the post-deployment paths."""
    return _tree(tmp_path_factory, 'mastodon-4.3', schema_load_fix=False)


@pytest.fixture
def trees(tree_current, tree_4_3):
    return {'4.6': tree_current, '4.3': tree_4_3}


@pytest.fixture
def job(migrations_pg):
    return migrations_pg


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.write_line('migration Jobs run (case, step, seconds, exit code, migrations run):')
    for case, step, seconds, code, ran in TIMINGS:
        terminalreporter.write_line('  %-48s %-22s %5.1f s  exit %-3s %s' % (case, step, seconds, code, ' '.join(ran) or '-'))
