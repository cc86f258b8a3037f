# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The migration Jobs' containers (`_migrations.job_container()`, command and env exactly) run with real
ActiveRecord against a real PostgreSQL, as the application's (non-superuser) role on the direct endpoint.

The Rails tree (mastodon_tree/README.md) follows Mastodon v4.5.15 / v4.6.5:
- lib/mastodon/database.rb:31: db/post_migrate joins the paths unless SKIP_POST_DEPLOYMENT_MIGRATIONS is
  present (any value);
- lib/tasks/db.rake:63-74: `db:migrate` checks the PostgreSQL version, and with the variable refuses a
  schema older than 2023-09-07 (4.2.0);
- lib/active_record/database_tasks_extensions.rb (mastodon/mastodon#34089, Mastodon 4.4+): schema load
  forces db/post_migrate onto the paths; the `tree_4_3` fixture removes that line (Mastodon 4.3 and
  earlier);
- config/database.yml: DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASS/DB_SSLMODE/PREPARED_STATEMENTS;
- Rails 8's `db:prepare` (rails/rails activerecord/lib/active_record/tasks/database_tasks.rb, prepare_all
  and initialize_database): no schema_migrations table -> load db/schema.rb, migrate, seed.
"""
from __future__ import annotations

import os
import re
import textwrap

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations

from migration_jobs import APP_USER, COLLECTION_ROOT, POST_VERSIONS, PRE_VERSIONS  # pylint: disable=import-error

# The current release of the tree: what an upgrade from the previous release must run.
PREVIOUS_RELEASE = '20250201000000'  # the newest migration of the previous release (a post-deployment one)
NEW_PRE = [v for v in PRE_VERSIONS if v > PREVIOUS_RELEASE]
NEW_POST = [v for v in POST_VERSIONS if v > PREVIOUS_RELEASE]
GUIDE_UPGRADE = os.path.join(COLLECTION_ROOT, 'docs', 'docsite', 'rst', 'guide_upgrade.rst')
BEFORE_4_2 = '20220101000000'  # a database of a release before 4.2.0
TOO_OLD_MESSAGE = 'Zero-downtime migrations from Mastodon versions earlier than 4.2.0 are not supported.'

# The Jobs before this change (roles/migrations/templates/job.yml.j2 and defaults/main.yml): the pre
# phase `db:prepare` with SKIP_POST_DEPLOYMENT_MIGRATIONS=true whatever the database, the post phase
# `db:migrate`.
OLD_ENV = {'RAILS_ENV': 'production', 'NODE_ENV': 'production', 'PREPARED_STATEMENTS': 'true', 'DB_POOL': '5'}
OLD_JOBS = {
    'pre': {'command': ['bundle', 'exec', 'rails', 'db:prepare'],
            'env': dict(OLD_ENV, SKIP_POST_DEPLOYMENT_MIGRATIONS='true')},
    'post': {'command': ['bundle', 'exec', 'rails', 'db:migrate'], 'env': dict(OLD_ENV)},
}


def deployed_release(job, tree, database, version, case, **as_user):
    """Bring an empty database to `version` as a finished deploy of that release leaves it: every
    migration up to it, both directories (test set-up, not a Job; as the application's user unless
    `user`/`password` say otherwise)."""
    setup = {'command': ['bundle', 'exec', 'rails', 'db:migrate'], 'env': {'RAILS_ENV': 'production', 'VERSION': version}}
    result = job.run(tree, setup, database, case, 'set-up %s' % version, **as_user)
    assert result.returncode == 0, result
    database.sql("INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now())")
    if 'statuses' in database.owners():
        database.sql("INSERT INTO statuses (account_id, text, created_at, updated_at) "
                     "SELECT id, 'hello', now(), now() FROM accounts WHERE username = 'alice'")


def assert_owned_by_app_user(database):
    owners = database.owners()
    assert owners and set(owners.values()) == {APP_USER}, owners


@pytest.mark.parametrize('release', ['4.6', '4.3'])
def test_fresh_install(job, trees, database, release):
    """Empty database: the pre Job loads the schema (with the seeds) and records every migration of both
    directories; the post Job runs 0 migrations and succeeds. Whether or not Mastodon forces the
    post-deployment paths during schema load (4.4+ does, 4.3 does not)."""
    tree, case = trees[release], 'fresh install %s' % release
    pre = job.run(tree, _migrations.job_container('pre'), database, case, 'pre')
    assert pre.returncode == 0, pre
    assert 'empty database, fresh install: rails db:prepare without SKIP_POST_DEPLOYMENT_MIGRATIONS' in pre.output
    assert pre.migrated == []  # schema load, no migration run
    assert 'fediops: schema_version=' not in pre.output  # an empty database: nothing found, nothing claimed
    assert _migrations.schema_version_from_log(pre.output) is None
    assert database.versions() == sorted(PRE_VERSIONS + POST_VERSIONS)
    assert database.sql('SELECT username FROM accounts WHERE id = -99').strip() == 'mastodon.internal'  # seeds

    post = job.run(tree, _migrations.job_container('post'), database, case, 'post')
    assert post.returncode == 0, post
    assert post.migrated == []
    assert database.versions() == sorted(PRE_VERSIONS + POST_VERSIONS)
    assert_owned_by_app_user(database)


def test_old_command_line_fails_a_fresh_install_of_mastodon_4_3(job, tree_4_3, database):
    """Why the pre Job decides: the old Jobs (db:prepare WITH the variable on an empty database, then
    db:migrate) load the schema without recording the post-deployment migrations, and the post Job re-runs
    them against the final schema. Mastodon 4.3 and earlier (no schema-load fix) fail here."""
    pre = job.run(tree_4_3, OLD_JOBS['pre'], database, 'old command line, fresh 4.3', 'old pre')
    assert pre.returncode == 0, pre
    assert set(POST_VERSIONS[:-1]).isdisjoint(database.versions())  # unrecorded, although in the schema
    post = job.run(tree_4_3, OLD_JOBS['post'], database, 'old command line, fresh 4.3', 'old post')
    assert post.returncode != 0, post
    assert 'PG::UndefinedColumn' in post.output, post
    assert 'column "legacy_flag" of relation "accounts" does not exist' in post.output


def test_old_command_line_on_mastodon_4_6_passes_a_fresh_install_but_skips_the_too_old_refusal(job, tree_current, database):
    """With 4.4's schema-load fix the old Jobs survive a fresh install; their other fault remains: `db:prepare`
    never runs lib/tasks/db.rake's pre_migration_check, so a database older than 4.2.0 is migrated without
    Mastodon's refusal (the new pre Job refuses it: test_too_old_is_refused)."""
    fresh = job.run(tree_current, OLD_JOBS['pre'], database, 'old command line, 4.6', 'old pre (fresh)')
    assert fresh.returncode == 0, fresh
    post = job.run(tree_current, OLD_JOBS['post'], database, 'old command line, 4.6', 'old post (fresh)')
    assert post.returncode == 0 and post.migrated == [], post

    database.sql('DROP TABLE accounts, keypairs, statuses, schema_migrations, ar_internal_metadata')
    deployed_release(job, tree_current, database, BEFORE_4_2, 'old command line, 4.6')
    too_old = job.run(tree_current, OLD_JOBS['pre'], database, 'old command line, 4.6', 'old pre (too old)')
    assert too_old.returncode == 0, too_old
    assert TOO_OLD_MESSAGE not in too_old.output
    assert too_old.migrated == [v for v in PRE_VERSIONS if v > BEFORE_4_2]


def test_upgrade(job, tree_current, database):
    """Database of the previous release: the pre Job runs only the new db/migrate migrations (the old column
    stays for the pods still running), the post Job only the new db/post_migrate ones; the result equals a
    fresh install's schema (db/schema.rb matches the migrations)."""
    case = 'upgrade'
    deployed_release(job, tree_current, database, PREVIOUS_RELEASE, case)
    pre = job.run(tree_current, _migrations.job_container('pre'), database, case, 'pre')
    assert pre.returncode == 0, pre
    assert 'existing database, upgrade: rails db:migrate with SKIP_POST_DEPLOYMENT_MIGRATIONS=true' in pre.output
    assert pre.migrated == NEW_PRE and NEW_PRE
    # The schema version the pre script found (its own line), and what the deploy record learns from the log:
    # the newest migration run, as real ActiveRecord announces it.
    assert 'fediops: schema_version=%s\n' % PREVIOUS_RELEASE in pre.output
    assert _migrations.migration_progress(pre.output)['found'] == PREVIOUS_RELEASE
    assert _migrations.schema_version_from_log(pre.output) == max(NEW_PRE) == max(database.versions())
    assert _migrations.describe_progress(pre.output).startswith('migration %s ' % max(NEW_PRE))
    assert {'text', 'content'} <= set(database.columns('statuses'))
    assert database.sql("SELECT content FROM statuses").strip() == 'hello'

    post = job.run(tree_current, _migrations.job_container('post'), database, case, 'post')
    assert post.returncode == 0, post
    assert post.migrated == NEW_POST and NEW_POST
    assert 'text' not in database.columns('statuses')
    assert database.versions() == sorted(PRE_VERSIONS + POST_VERSIONS)
    assert_owned_by_app_user(database)


def test_upgrade_matches_fresh_install_schema(job, tree_current, database, migrations_pg):
    """db/schema.rb (what a fresh install loads) and the migrations (what an upgrade runs) give the same
    columns, types, defaults and indexes."""
    deployed_release(job, tree_current, database, PREVIOUS_RELEASE, 'schema match')
    for phase in _migrations.PHASES:
        assert job.run(tree_current, _migrations.job_container(phase), database, 'schema match', phase).returncode == 0
    migrations_pg.env.postgres.psql('DROP DATABASE IF EXISTS %s_fresh' % database.name)
    migrations_pg.env.postgres.psql('CREATE DATABASE %s_fresh' % database.name)
    fresh = type(database)(migrations_pg.env, database.name + '_fresh')
    fresh.sql('GRANT CREATE, USAGE ON SCHEMA public TO %s' % APP_USER)
    for phase in _migrations.PHASES:
        assert job.run(tree_current, _migrations.job_container(phase), fresh, 'schema match', 'fresh ' + phase).returncode == 0
    assert database.schema() == fresh.schema()


def test_upgrade_with_a_failing_pre_step(job, tree_current, database):
    """A pre-deployment migration fails (duplicates for a new unique index): the Job fails, nothing of the
    post-deployment phase ran (its migrations unrecorded, the old column kept); after fixing the data the
    re-run Job (k8s_apply replaces the failed one) succeeds and the post Job then runs."""
    case = 'failing pre step'
    deployed_release(job, tree_current, database, PREVIOUS_RELEASE, case)
    database.sql("INSERT INTO accounts (username, created_at, updated_at) VALUES ('alice', now(), now())")
    failed = job.run(tree_current, _migrations.job_container('pre'), database, case, 'pre (fails)')
    assert failed.returncode != 0, failed
    assert 'PG::UniqueViolation' in failed.output
    assert set(NEW_POST).isdisjoint(database.versions())
    assert 'text' in database.columns('statuses')

    database.sql("DELETE FROM accounts WHERE id = (SELECT max(id) FROM accounts WHERE username = 'alice')")
    retried = job.run(tree_current, _migrations.job_container('pre'), database, case, 'pre (re-run)')
    assert retried.returncode == 0, retried
    assert set(failed.migrated + retried.migrated) == set(NEW_PRE)
    assert set(NEW_POST).isdisjoint(database.versions())
    post = job.run(tree_current, _migrations.job_container('post'), database, case, 'post')
    assert post.returncode == 0, post
    assert post.migrated == NEW_POST


def test_too_old_is_refused(job, tree_current, database):
    """A database older than 4.2.0: Mastodon's refusal (lib/tasks/db.rake:69) ends the pre Job, its message in
    the Job's log, nothing migrated."""
    deployed_release(job, tree_current, database, BEFORE_4_2, 'too old')
    before = database.versions()
    pre = job.run(tree_current, _migrations.job_container('pre'), database, 'too old', 'pre')
    assert pre.returncode != 0, pre
    assert 'existing database, upgrade' in pre.output
    assert TOO_OLD_MESSAGE in pre.output
    assert 'Please update to Mastodon 4.2.x first' in pre.output
    assert pre.migrated == [] and database.versions() == before


def test_unreachable_database_is_not_read_as_empty(job, tree_current, database):
    """The check failing (here a wrong password) fails the Job before anything runs: an error must never send
    an existing database down the fresh-install path."""
    pre = job.run(tree_current, _migrations.job_container('pre'), database, 'check fails', 'pre', password='wrong')
    assert pre.returncode == 1, pre
    assert 'cannot tell whether the database is empty' in pre.output
    assert 'fresh install' not in pre.output and 'upgrade:' not in pre.output
    assert database.versions() == [] and database.owners() == {}


def test_tables_created_by_the_admin_are_refused_until_handed_over(job, tree_current, database):
    """Why the Jobs run as the application's user, and the way over from the old Jobs (which ran as the
    cluster admin): the application's user may not alter the admin's tables (PostgreSQL: only a table's
    owner may), so the pre Job stops before migrating, naming both users; the upgrade guide's hand-over
    (run here as the guide shows it) fixes it, and the upgrade then runs as usual."""
    env = job.env
    case = 'admin-owned tables'
    deployed_release(job, tree_current, database, PREVIOUS_RELEASE, case, user=env.DB_USER, password=env.password)
    assert set(database.owners().values()) == {env.DB_USER}
    before = database.versions()
    refused = job.run(tree_current, _migrations.job_container('pre'), database, case, 'pre (refused)')
    assert refused.returncode == 1, refused
    assert ('the schema belongs to the database user %s, and the migrations run as %s' % (env.DB_USER, APP_USER)
            in refused.output), refused
    assert 'hand the tables over' in refused.output
    assert refused.migrated == [] and database.versions() == before

    database.psql_script(guide_hand_over_sql(), app_user=APP_USER)
    assert_owned_by_app_user(database)
    pre = job.run(tree_current, _migrations.job_container('pre'), database, case, 'pre (after hand-over)')
    assert pre.returncode == 0 and pre.migrated == NEW_PRE, pre
    post = job.run(tree_current, _migrations.job_container('post'), database, case, 'post')
    assert post.returncode == 0 and post.migrated == NEW_POST, post


def guide_hand_over_sql():
    """The SQL of the upgrade guide's hand-over block (the here-document fed to psql)."""
    with open(GUIDE_UPGRADE, encoding='utf-8') as handle:
        text = handle.read()
    match = re.search(r"<<'SQL'\n(.*?)\n\s*SQL\n", text, re.DOTALL)
    assert match, 'no hand-over SQL in %s' % GUIDE_UPGRADE
    return textwrap.dedent(match.group(1)) + '\n'
