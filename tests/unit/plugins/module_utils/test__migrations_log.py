# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a migration Job's log: Rails' announce lines (ActiveRecord::Migration#announce: "== %s %s" %
["#{version} #{name}: #{message}", "=" * [0, 75 - text.length].max]) and the pre-deployment script's
`fediops: schema_version=` line. tests/integration/migrations checks the same against real ActiveRecord output."""

from __future__ import annotations

from ansible_collections.fediops.mastodon.plugins.module_utils._migrations import (
    PRE_SCRIPT, describe_progress, migration_progress, schema_version_from_log)

# As Rails prints it (padding to 75 columns; a long name gets no padding and a trailing space).
LOG = '''fediops migrations (pre-deployment): does the database have a schema (the schema_migrations table)?
fediops migrations: schema_migrations holds 812 versions, the newest "20260601000000"
fediops: schema_version=20260601000000
fediops migrations: existing database, upgrade: rails db:migrate with SKIP_POST_DEPLOYMENT_MIGRATIONS=true
== 20260702000000 AddThings: migrating =======================================
-- add_column(:accounts, :thing, :string)
   -> 0.0012s
== 20260702000000 AddThings: migrated (0.0031s) ==============================

== 20260728145403 UpdateAccountSummariesToVersion3ThatHasAVeryLongNameIndeedYes: migrating\x20
-- update_view(:account_summaries, {:version=>3, :revert_to_version=>2, :materialized=>true})
'''


def test_current_migration_and_the_done_ones():
    progress = migration_progress(LOG)
    assert progress['current'] == ('20260728145403', 'UpdateAccountSummariesToVersion3ThatHasAVeryLongNameIndeedYes')
    assert progress['done'] == [('20260702000000', 'AddThings')]
    assert progress['found'] == '20260601000000'
    assert describe_progress(LOG) == 'migration 20260728145403 UpdateAccountSummariesToVersion3ThatHasAVeryLongNameIndeedYes'


def test_between_two_migrations_and_before_any():
    between = LOG.split('\n== 20260728145403', maxsplit=1)[0]
    assert describe_progress(between) == 'migration 20260702000000 AddThings done, 1 so far'
    assert describe_progress(LOG.split('== 2026', maxsplit=1)[0]) is None
    assert describe_progress('') is None and describe_progress(None) is None
    assert describe_progress(12345) is None  # a log the client decoded as JSON


def test_schema_version_is_the_newest_the_log_proves():
    assert schema_version_from_log(LOG) == '20260702000000'  # the running one is not recorded yet
    done = LOG + '== 20260728145403 UpdateAccountSummariesToVersion3ThatHasAVeryLongNameIndeedYes: migrated (1190.1s) \n'
    assert schema_version_from_log(done) == '20260728145403'
    assert schema_version_from_log('fediops: schema_version=20260601000000\n') == '20260601000000'
    assert schema_version_from_log('fediops: schema_version=none\n') is None  # an empty database
    assert schema_version_from_log('nothing') is None


def test_pre_script_prints_the_schema_version_line():
    """The Ruby of the schema check prints it (run for real in tests/integration/migrations)."""
    assert 'puts "fediops: schema_version=#{newest || "none"}"' in PRE_SCRIPT
