# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the migration Jobs' containers: the scripts' decisions, run by /bin/sh with a stand-in
`bundle` that records what it was asked to run and with which SKIP_POST_DEPLOYMENT_MIGRATIONS. (What Rails
then does with them is tests/integration/migrations, with real ActiveRecord and PostgreSQL.)"""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._migrations import (
    MigrationsError,
    job_container,
)

# The stand-in: `bundle exec rails runner CODE` exits with $FAKE_CHECK_EXIT; any other command is recorded
# in $FAKE_LOG with the variable as the process sees it (null: absent) and exits 0.
FAKE_BUNDLE = '''#!/bin/sh
if [ "$3" = runner ]; then
  echo "checked" >> "$FAKE_LOG.check"
  exit "$FAKE_CHECK_EXIT"
fi
if [ -n "${SKIP_POST_DEPLOYMENT_MIGRATIONS+set}" ]; then skip="\\"$SKIP_POST_DEPLOYMENT_MIGRATIONS\\""; else skip=null; fi
printf '{"args": "%s", "skip": %s}\\n' "$*" "$skip" >> "$FAKE_LOG"
'''


@pytest.fixture
def run(tmp_path):
    bundle = tmp_path / 'bundle'
    bundle.write_text(FAKE_BUNDLE)
    bundle.chmod(bundle.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / 'calls.jsonl'

    def _run(phase, check_exit=0, inherited=None):
        container = job_container(phase)
        env = {'PATH': '%s:%s' % (tmp_path, os.environ.get('PATH', '/usr/bin:/bin')), 'FAKE_LOG': str(log),
               'FAKE_CHECK_EXIT': str(check_exit)}
        env.update(inherited or {})
        env.update(container['env'])
        completed = subprocess.run(container['command'], env=env, capture_output=True, text=True, check=False)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        checks = (tmp_path / 'calls.jsonl.check')
        checked = checks.exists()
        checks.unlink(missing_ok=True)
        return completed, calls, checked

    return _run


def test_empty_database_gets_db_prepare_without_the_variable(run):
    """Even when the pod's env (envFrom) carried the variable, with any value."""
    completed, calls, checked = run('pre', check_exit=11, inherited={'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'false'})
    assert completed.returncode == 0, completed.stderr
    assert checked
    assert calls == [{'args': 'exec rails db:prepare', 'skip': None}]
    assert 'empty database, fresh install' in completed.stdout


def test_existing_database_gets_db_migrate_with_the_variable_true(run):
    completed, calls, checked = run('pre', check_exit=10)
    assert completed.returncode == 0, completed.stderr
    assert checked
    assert calls == [{'args': 'exec rails db:migrate', 'skip': 'true'}]
    assert 'existing database, upgrade' in completed.stdout


def test_downtime_phase_migrates_an_existing_database_without_the_variable(run):
    """config_upgrade_with_downtime: every migration at once, even when the pod's env carried the variable (Mastodon's
    zero-downtime floor, lib/tasks/db.rake:68-72, applies only with it set)."""
    completed, calls, checked = run('downtime', check_exit=10, inherited={'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'true'})
    assert completed.returncode == 0, completed.stderr
    assert checked
    assert calls == [{'args': 'exec rails db:migrate', 'skip': None}]
    assert 'upgrade with downtime' in completed.stdout


@pytest.mark.parametrize('check_exit', [11, 12, 1])
def test_downtime_phase_keeps_the_pre_scripts_schema_checks(run, check_exit):
    completed, calls, dummy = run('downtime', check_exit=check_exit)
    assert calls == ([{'args': 'exec rails db:prepare', 'skip': None}] if check_exit == 11 else [])
    assert completed.returncode == (0 if check_exit == 11 else 1)


@pytest.mark.parametrize('check_exit', [1, 2, 127])
def test_failed_check_runs_nothing(run, check_exit):
    """An error of the check (database unreachable, wrong password: `rails runner` exits 1) is never read as
    "empty": the Job fails before any task runs."""
    completed, calls, dummy = run('pre', check_exit=check_exit)
    assert completed.returncode == 1
    assert calls == []
    assert 'cannot tell whether the database is empty (the check exited with %d' % check_exit in completed.stderr


def test_schema_of_another_user_runs_nothing(run):
    """The check found a schema whose tables the Job's user may not alter (created by the admin)."""
    completed, calls, dummy = run('pre', check_exit=12)
    assert completed.returncode == 1
    assert calls == []
    assert "hand the tables over to the application's database user first" in completed.stderr


def test_post_phase_is_db_migrate_without_the_variable(run):
    """After the key check (do the Job's encryption keys decrypt what the database holds?)."""
    completed, calls, checked = run('post', inherited={'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'true'})
    assert completed.returncode == 0, completed.stderr
    assert checked
    assert calls == [{'args': 'exec rails db:migrate', 'skip': None}]


@pytest.mark.parametrize('phase, check_exit', [('pre', 13), ('pre', 14), ('post', 14)])
def test_secrets_that_are_not_the_databases_run_nothing(run, phase, check_exit):
    """New secrets for a database with a schema (13), keys that do not decrypt its values (14): the Job fails
    with that exit code, nothing runs (the real check: tests/integration/migrations/test_migrations_keys.py)."""
    completed, calls, dummy = run(phase, check_exit=check_exit)
    assert completed.returncode == check_exit
    assert calls == []
    assert "the secrets of this deploy are not this database's" in completed.stderr


def test_post_phase_check_failing_runs_nothing(run):
    completed, calls, dummy = run('post', check_exit=1)
    assert completed.returncode == 1 and calls == []
    assert 'the key check failed' in completed.stderr


def test_the_signals_reach_the_env_and_the_name():
    from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
    assert job_container('pre', fresh_secrets=True)['env'][_migrations.FRESH_SECRETS_VARIABLE] == 'true'
    assert _migrations.FRESH_SECRETS_VARIABLE not in job_container('post', fresh_secrets=True)['env']
    assert job_container('post', encryption_keys_replaced=True)['env'][_migrations.KEYS_REPLACED_VARIABLE] == 'true'
    assert _migrations.job_name_suffix('pre', fresh_secrets=True) == '-new-keys'
    assert _migrations.job_name_suffix('post', fresh_secrets=True) == ''
    assert _migrations.job_name_suffix('post', encryption_keys_replaced=True) == '-rekeyed'


def test_containers_never_carry_the_variable_and_connect_directly():
    for phase in ('pre', 'post', 'downtime'):
        container = job_container(phase)
        assert container['command'][:2] == ['/bin/sh', '-c']
        assert 'SKIP_POST_DEPLOYMENT_MIGRATIONS' not in container['env']
        assert container['env']['PREPARED_STATEMENTS'] == 'true'
        assert container['env']['RAILS_ENV'] == 'production'


def test_extra_env_is_added_but_may_not_carry_the_variable():
    assert job_container('pre', {'LOG_LEVEL': 'debug', 'DB_POOL': 2})['env']['DB_POOL'] == '2'
    with pytest.raises(MigrationsError, match='^migrations_extra_env: SKIP_POST_DEPLOYMENT_MIGRATIONS is decided'):
        job_container('post', {'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'false'})


def test_unknown_phase_is_refused_naming_the_variable():
    with pytest.raises(MigrationsError, match="^migrations_phase: must be one of pre, post, not 'prepare'"):
        job_container('prepare')
