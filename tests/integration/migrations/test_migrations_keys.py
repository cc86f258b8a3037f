# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The database's keys are the instance's identity: the migration Jobs (`_migrations.job_container()`,
command and env exactly) refuse secrets that are not the database's, before any migration, with nothing
written, against a real PostgreSQL (migration_jobs.py).

Mastodon encrypts columns with the ActiveRecord encryption keys (4.7: `keypairs.private_key`, every local
account's signing key, app/models/keypair.rb:25; the tree's app/models/keypair.rb and its Rails 6.1
stand-in for ActiveRecord::Encryption, lib/active_record/rails7_encryption.rb). The plan finds the kept
secrets by `<config_name>-generated-secrets` in `config_namespace` only: a renamed instance gets new
keys (`fresh_secrets`) for the old database.
"""
from __future__ import annotations

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations

from migration_jobs import POST_VERSIONS, encryption_keys  # pylint: disable=import-error

KEYPAIRS = '20260601000200'  # the tree's migration that creates keypairs (db/migrate)
PENDING_POST = [v for v in POST_VERSIONS if v > KEYPAIRS]
SIGNING_KEY = 'local-signing-key-material'


def rails(job, tree, database, code, case, step, keys):
    """`rails runner` in the tree as the application would (test set-up, not a Job)."""
    container = {'command': ['bundle', 'exec', 'rails', 'runner', code], 'env': {'RAILS_ENV': 'production'}}
    return job.run(tree, container, database, case, step, extra_env=keys)


def instance_with_encrypted_rows(job, tree, database, case):
    """A database of a running instance (keys `job.keys`): every migration up to the keypairs table,
    the post-deployment migration of this release still pending, and one local account's signing key
    written through the model (encrypted)."""
    setup = {'command': ['bundle', 'exec', 'rails', 'db:migrate'], 'env': {'RAILS_ENV': 'production', 'VERSION': KEYPAIRS}}
    assert job.run(tree, setup, database, case, 'set-up %s' % KEYPAIRS).returncode == 0
    database.sql("INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now())")
    written = rails(job, tree, database, 'Keypair.create!(account_id: 1, private_key: "%s")' % SIGNING_KEY, case,
                    'write keypair', job.keys)
    assert written.returncode == 0, written
    stored = database.sql('SELECT private_key FROM keypairs').strip()
    assert stored and SIGNING_KEY not in stored, stored  # encrypted at rest
    read = rails(job, tree, database, 'puts Keypair.first.private_key', case, 'read keypair', job.keys)
    assert read.returncode == 0 and SIGNING_KEY in read.output, read  # and readable with the instance's keys


def snapshot(database):
    return database.versions(), database.checksum(), database.schema()


def test_renamed_instance_is_refused_before_any_migration(job, tree_current, database):
    """A changed config_name/config_namespace (or a deleted namespace): the plan generated new secrets, the
    database already has a schema. The pre Job refuses (exit 13) before any migration, saying how to restore
    the old instance's secrets; schema_migrations, every table's rows and the schema are unchanged."""
    case = 'renamed instance'
    instance_with_encrypted_rows(job, tree_current, database, case)
    before = snapshot(database)
    refused = job.run(tree_current, _migrations.job_container('pre', fresh_secrets=True), database, case, 'pre (new keys)',
                      extra_env=encryption_keys())
    assert refused.returncode == _migrations.FRESH_SECRETS_EXIT == 13, refused
    assert 'this database already holds a Mastodon schema' in refused.output
    assert 'this deploy generated new secrets' in refused.output
    assert 'Restore the secrets of the old instance' in refused.output and 'generated-secrets' in refused.output
    assert 'upgrade:' not in refused.output and 'fresh install' not in refused.output
    assert refused.migrated == []
    assert snapshot(database) == before
    # the keys never reached the log
    for value in job.keys.values():
        assert value not in refused.output


def test_renamed_instance_is_refused_without_encrypted_rows_too(job, tree_current, database):
    """The schema alone decides (SECRET_KEY_BASE signs sessions, VAPID the push subscriptions): a database
    of a release without encrypted columns is refused the same way."""
    case = 'renamed, no encrypted rows'
    setup = {'command': ['bundle', 'exec', 'rails', 'db:migrate'], 'env': {'RAILS_ENV': 'production', 'VERSION': '20250201000000'}}
    assert job.run(tree_current, setup, database, case, 'set-up').returncode == 0
    before = snapshot(database)
    refused = job.run(tree_current, _migrations.job_container('pre', fresh_secrets=True), database, case, 'pre (new keys)',
                      extra_env=encryption_keys())
    assert refused.returncode == 13, refused
    assert snapshot(database) == before


def test_new_keys_on_an_empty_database_install(job, tree_current, database):
    """The signal does not stop a first install: an empty database loads the schema as before."""
    pre = job.run(tree_current, _migrations.job_container('pre', fresh_secrets=True), database, 'first install', 'pre')
    assert pre.returncode == 0, pre
    assert 'empty database, fresh install' in pre.output
    post = job.run(tree_current, _migrations.job_container('post'), database, 'first install', 'post')
    assert post.returncode == 0 and post.migrated == [], post


@pytest.mark.parametrize('phase', _migrations.PHASES)
def test_wrong_encryption_keys_are_refused(job, tree_current, database, phase):
    """Keys that do not decrypt the stored values (a restore from the wrong backup, a Secret copied from
    another instance): both Jobs refuse (exit 14) naming the model and attribute, nothing migrated, nothing
    written."""
    case = 'wrong keys (%s)' % phase
    instance_with_encrypted_rows(job, tree_current, database, case)
    before = snapshot(database)
    refused = job.run(tree_current, _migrations.job_container(phase), database, case, phase, extra_env=encryption_keys())
    assert refused.returncode == _migrations.KEYS_EXIT == 14, refused
    assert 'do not decrypt Keypair#private_key' in refused.output
    assert 'ActiveRecord::Encryption::Errors::Decryption' in refused.output
    assert refused.migrated == []
    assert snapshot(database) == before


def test_right_keys_migrate(job, tree_current, database):
    """The instance's own keys: the pre Job takes the upgrade path, the post Job runs the pending
    post-deployment migration, and the signing key still decrypts."""
    case = 'right keys'
    instance_with_encrypted_rows(job, tree_current, database, case)
    pre = job.run(tree_current, _migrations.job_container('pre'), database, case, 'pre')
    assert pre.returncode == 0, pre
    assert 'existing database, upgrade' in pre.output
    post = job.run(tree_current, _migrations.job_container('post'), database, case, 'post')
    assert post.returncode == 0, post
    assert post.migrated == PENDING_POST and PENDING_POST
    read = rails(job, tree_current, database, 'puts Keypair.first.private_key', case, 'read keypair', job.keys)
    assert SIGNING_KEY in read.output, read


def test_keys_replaced_on_purpose_go_on(job, tree_current, database):
    """The explicit, data-destroying rotation of the encryption keys (FEDIOPS_ENCRYPTION_KEYS_REPLACED): the
    undecryptable value is reported and the migrations run."""
    case = 'keys replaced on purpose'
    instance_with_encrypted_rows(job, tree_current, database, case)
    post = job.run(tree_current, _migrations.job_container('post', encryption_keys_replaced=True), database, case, 'post',
                   extra_env=encryption_keys())
    assert post.returncode == 0, post
    assert 'cannot be decrypted' in post.output and 'replaced on purpose' in post.output
    assert post.migrated == PENDING_POST


def test_the_plan_signals_cannot_come_from_extra_env():
    for name in (_migrations.FRESH_SECRETS_VARIABLE, _migrations.KEYS_REPLACED_VARIABLE):
        with pytest.raises(_migrations.MigrationsError, match='migrations_extra_env: %s is set by the deploy' % name):
            _migrations.job_container('pre', extra_env={name: 'false'})
