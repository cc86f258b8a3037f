# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The container of Mastodon's migration Jobs: what runs before the rollout and what runs after it.

PRIVATE to this collection: no API guarantees.

Mastodon's rules (v4.5.15 / v4.6.5; tests/data/mastodon/FACTS.md):

* `lib/mastodon/database.rb:31` adds `db/post_migrate` to the migration paths unless
  `SKIP_POST_DEPLOYMENT_MIGRATIONS` is present; a presence test, so any value (even `false`) skips.
  The Jobs therefore never carry the variable: the pre-deployment script exports it (`true`) on the
  upgrade path only.
* Rails' `db:prepare` loads `db/schema.rb` into a database without a `schema_migrations` table and
  records as run the migrations on the paths of that moment, then runs the seeds. Loaded without
  the variable, every post-deployment migration is recorded and the post-deployment Job has nothing
  to do. (Mastodon 4.4 and later also force `db/post_migrate` onto the paths while loading the
  schema, mastodon/mastodon#34089; earlier releases do not, and their post-deployment Job then
  re-ran the post-deployment migrations against the final schema: PG::UndefinedColumn.)
* `lib/tasks/db.rake:69`: `db:migrate` with the variable refuses a schema older than 4.2.0
  (2023-09-07) with a message; `db:prepare` never runs that check.

So the pre-deployment Job asks the database itself (`rails runner`, through Mastodon's own
config/database.yml) whether `schema_migrations` exists, Rails' own test for an uninitialized database:
missing -> fresh install: `rails db:prepare` without the variable; present -> upgrade: `rails
db:migrate` with `SKIP_POST_DEPLOYMENT_MIGRATIONS=true` (Mastodon's too-old refusal applies and its
message ends the Job's log); present but owned by a role the Job's user does not inherit (a schema
the admin created) or the check failing (connection, credentials) -> the Job fails, nothing
changed. The post-deployment Job is `rails db:migrate` without the variable. Each script says in the
Job's log which path it took. Proven with ActiveRecord on PostgreSQL by tests/integration/migrations.

The database's keys are the instance's identity. SECRET_KEY_BASE and the ActiveRecord encryption keys
belong to the database they were first used with: Mastodon encrypts columns with the latter (4.7: every
local account's federation signing key, app/models/keypair.rb:25; "Do not change the secrets once they
are set", config/initializers/active_record_encryption.rb:25). The plan looks for the kept secrets by
`<config_name>-generated-secrets` in `config_namespace` only, so a changed name or namespace (or a
namespace deleted and re-created) generates new ones for a database that already has an instance.
Two refusals, both before any migration and with nothing written to the database:

* `FEDIOPS_FRESH_SECRETS=true` (set by the plan on the pre-deployment Job when it generated these keys
  in this deploy) and a `schema_migrations` table present: exit 13, with how to restore the old
  instance's secrets. A fresh install (no schema) goes on.
* Before an upgrade (and before the post-deployment migrations), every model that `encrypts` an
  attribute (Mastodon's own models, `Rails.application.eager_load!`) has its newest non-null value
  read with the keys the Job was given; `ActiveRecord::Encryption::Errors::Decryption` (or
  `Errors::Configuration`): exit 14, naming the model and the attribute. Only with
  `FEDIOPS_ENCRYPTION_KEYS_REPLACED=true` (the plan's explicit, data-destroying rotation of the
  encryption keys) is an undecryptable value reported and the migrations go on.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

PHASES = ('pre', 'post')  # migrations_phase
# downtime: the pre-deployment Job of an upgrade with downtime (config_upgrade_with_downtime), not a migrations_phase
JOB_PHASES = PHASES + ('downtime',)
SKIP_VARIABLE = 'SKIP_POST_DEPLOYMENT_MIGRATIONS'
# Set by the plan only (never through migrations_extra_env): see the module's docstring.
FRESH_SECRETS_VARIABLE = 'FEDIOPS_FRESH_SECRETS'
KEYS_REPLACED_VARIABLE = 'FEDIOPS_ENCRYPTION_KEYS_REPLACED'
PLAN_VARIABLES = (SKIP_VARIABLE, FRESH_SECRETS_VARIABLE, KEYS_REPLACED_VARIABLE)

# Exit codes of the schema check: distinct from 1, which is what `rails runner` exits with on an
# error (database unreachable, wrong password), so that an error is never read as "empty".
_INITIALIZED = 10
_EMPTY = 11
_FOREIGN_OWNER = 12
FRESH_SECRETS_EXIT = 13
KEYS_EXIT = 14

# Ruby (no single quote, see below): do the ActiveRecord encryption keys of this Job decrypt what the
# database holds? The newest non-null value of every encrypted attribute of every model, read through
# the model (its attribute type decrypts). Rails raises Errors::Decryption for a value the keys cannot
# open, Errors::Configuration when no key is configured.
_KEYS_CHECK = '''
Rails.application.eager_load!
replaced = ENV["%(replaced)s"] == "true"
ActiveRecord::Base.descendants.each do |model|
  next if model.abstract_class? || !model.respond_to?(:encrypted_attributes) || model.encrypted_attributes.blank?
  next unless model.table_exists?
  model.encrypted_attributes.each do |attribute|
    next unless model.column_names.include?(attribute.to_s)  # added by a migration still to run
    scope = model.unscoped.where(model.arel_table[attribute].not_eq(nil))
    scope = scope.reorder(model.primary_key => :desc) if model.primary_key
    begin
      record = scope.first
    rescue ActiveRecord::StatementInvalid, ActiveRecord::SubclassNotFound => e
      warn "fediops migrations: #{model.name}##{attribute} not checked (#{e.class})"
      next
    end
    next if record.nil?
    begin
      record.read_attribute(attribute)
    rescue ActiveRecord::Encryption::Errors::Decryption, ActiveRecord::Encryption::Errors::Configuration => e
      if replaced
        warn "fediops migrations: #{model.name}##{attribute} cannot be decrypted (#{e.class}): " \\
             "the encryption keys were replaced on purpose (%(replaced)s), going on"
        next
      end
      warn "fediops migrations: the ActiveRecord encryption keys given to this Job do not decrypt #{model.name}##{attribute} " \\
           "(table #{model.table_name}, #{model.primary_key} #{record.id.inspect}: #{e.class}). They are not the keys this database " \\
           "was written with: ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY / _KEY_DERIVATION_SALT / _DETERMINISTIC_KEY of the Secret " \\
           "<config_name>-generated-secrets differ from the instance that wrote it (a changed config_name or config_namespace, " \\
           "a restore from the wrong backup). Restore the keys of that instance (config_secrets, or its Secret <name>-generated-secrets); " \\
           "nothing was changed"
      exit %(keys)d
    end
  end
end
''' % dict(replaced=KEYS_REPLACED_VARIABLE, keys=KEYS_EXIT)

# Ruby for `rails runner` (the script passes it in single quotes: no single quote inside). An existing
# schema must belong to the Job's user or to a role it inherits from: the migrations alter its tables,
# which only their owner may (earlier versions of this collection ran the Jobs as doadmin).
_SCHEMA_CHECK = '''
c = ActiveRecord::Base.connection
exit %(empty)d unless c.table_exists?("schema_migrations")
if ENV["%(fresh)s"] == "true"
  warn "fediops migrations: this database already holds a Mastodon schema (the table schema_migrations), " \\
       "and this deploy generated new secrets (SECRET_KEY_BASE, the ActiveRecord encryption keys): " \\
       "it belongs to another instance, or this instance lost its Secret <config_name>-generated-secrets (a changed " \\
       "config_name or config_namespace, a deleted namespace). New keys would make every encrypted column unreadable " \\
       "(Mastodon 4.7: the signing key of every local account) and log every user out. Nothing was changed. Restore the secrets of " \\
       "the old instance: copy its Secret <old name>-generated-secrets into this namespace as <config_name>-generated-secrets " \\
       "(or give its values in config_secrets from a backup), or deploy with the old config_name and config_namespace; then re-run"
  exit %(fresh_exit)d
end
owner = c.select_value("SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() AND tablename = #{c.quote("schema_migrations")}")
user = c.select_value("SELECT current_user")
unless c.select_value("SELECT pg_has_role(current_user, #{c.quote(owner)}, #{c.quote("USAGE")})")
  warn "fediops migrations: the schema belongs to the database user #{owner}, " \\
       "and the migrations run as #{user}, which may not alter its tables"
  exit %(foreign)d
end
count, newest = c.select_rows("SELECT count(*), max(version) FROM schema_migrations").first
puts "fediops migrations: schema_migrations holds #{count} versions, the newest #{newest.inspect}"
puts "fediops: schema_version=#{newest || "none"}"
%(keys_check)s
exit %(initialized)d
''' % dict(empty=_EMPTY, foreign=_FOREIGN_OWNER, initialized=_INITIALIZED, fresh=FRESH_SECRETS_VARIABLE,
           fresh_exit=FRESH_SECRETS_EXIT, keys_check=_KEYS_CHECK.strip())

_SCRIPT = '''\
set -eu
echo "fediops migrations (%(what)s): does the database have a schema (the schema_migrations table)?"
state=0
bundle exec rails runner '%(check)s' || state=$?
case "$state" in
%(initialized)d)
%(upgrade)s
  ;;
%(empty)d)
  echo "fediops migrations: empty database, fresh install: rails db:prepare without %(skip)s"
  echo "fediops migrations: (db/schema.rb, every migration recorded as run, the seeds; the post-deployment Job will have nothing to do)"
  unset %(skip)s
  exec bundle exec rails db:prepare
  ;;
%(fresh_exit)d|%(keys)d)
  echo "fediops migrations: refused: the secrets of this deploy are not this database\'s (the reason is above); nothing was changed" >&2
  exit $state
  ;;
%(foreign)d)
  echo "fediops migrations: hand the tables over to the application's database user first" >&2
  echo "fediops migrations: (upgrade guide, 'The database user of the migrations'); nothing was changed" >&2
  exit 1
  ;;
*)
  echo "fediops migrations: cannot tell whether the database is empty (the check exited with $state, its error is above); nothing was changed" >&2
  exit 1
  ;;
esac
'''


def _script(what, upgrade):
    return _SCRIPT % dict(check=_SCHEMA_CHECK, initialized=_INITIALIZED, empty=_EMPTY, foreign=_FOREIGN_OWNER,
                          skip=SKIP_VARIABLE, what=what, upgrade=upgrade % dict(skip=SKIP_VARIABLE),
                          fresh_exit=FRESH_SECRETS_EXIT, keys=KEYS_EXIT)


PRE_SCRIPT = _script('pre-deployment', '''\
  echo "fediops migrations: existing database, upgrade: rails db:migrate with %(skip)s=true (db/migrate only; db/post_migrate runs after the rollout)"
  export %(skip)s=true
  exec bundle exec rails db:migrate''')

# The upgrade with downtime (config_upgrade_with_downtime; web, streaming and Sidekiq are stopped first): the same
# schema checks, then every migration at once, db/post_migrate included. Without the variable, Mastodon's check
# of the zero-downtime floor does not apply (lib/tasks/db.rake:68-72 at 4.7 runs it only with
# SKIP_POST_DEPLOYMENT_MIGRATIONS set), so a schema below the floor migrates.
DOWNTIME_SCRIPT = _script('with downtime', '''\
  echo "fediops migrations: existing database, upgrade with downtime: rails db:migrate without %(skip)s (db/migrate and db/post_migrate at once)"
  unset %(skip)s
  exec bundle exec rails db:migrate''')

POST_SCRIPT = '''\
set -eu
unset %(skip)s
echo "fediops migrations (post-deployment): do the encryption keys of this Job decrypt what the database holds?"
state=0
bundle exec rails runner '%(keys_check)s' || state=$?
case "$state" in
0) ;;
%(keys)d)
  echo "fediops migrations: refused: the secrets of this deploy are not this database\'s (the reason is above); nothing was changed" >&2
  exit $state
  ;;
*)
  echo "fediops migrations: the key check failed (exit $state, its error is above); nothing was changed" >&2
  exit 1
  ;;
esac
echo "fediops migrations (post-deployment): rails db:migrate without %(skip)s (db/post_migrate and anything still pending)"
exec bundle exec rails db:migrate
''' % dict(skip=SKIP_VARIABLE, keys_check=_KEYS_CHECK.strip(), keys=KEYS_EXIT)

# The Job connects to PostgreSQL directly (DB_* of the db_direct Secret, as the application's user),
# never through the PgBouncer pool, so prepared statements stay on.
JOB_ENV = {
    'RAILS_ENV': 'production',
    'NODE_ENV': 'production',
    'PREPARED_STATEMENTS': 'true',
    'DB_POOL': '5',
}


class MigrationsError(ValueError):
    """Bad input for the migration Jobs; the message names the variable."""


def job_container(phase, extra_env=None, fresh_secrets=False, encryption_keys_replaced=False):
    """{'command': [...], 'env': {...}} of the migration container of `phase` ('pre', 'post', or 'downtime': the
    pre-deployment Job of an upgrade with downtime, which runs every migration).

    `extra_env` (the role's migrations_extra_env) is added to the env; it may not carry
    SKIP_POST_DEPLOYMENT_MIGRATIONS, which the scripts alone decide, nor the plan's signals.
    `fresh_secrets` (pre phase only): the plan generated SECRET_KEY_BASE / the encryption keys in this
    deploy, so a database that already has a schema is refused. `encryption_keys_replaced`: the
    operator rotated the encryption keys on purpose, an undecryptable value is reported, not refused.
    """
    if phase not in JOB_PHASES:
        raise MigrationsError('migrations_phase: must be one of %s, not %r' % (', '.join(PHASES), phase))
    env = dict(JOB_ENV)
    for key, value in (extra_env or {}).items():
        if key == SKIP_VARIABLE:
            raise MigrationsError(
                'migrations_extra_env: %s is decided by the migration Jobs themselves (Mastodon skips the '
                'post-deployment migrations whenever the variable is present, whatever its value); remove it' % key)
        if key in PLAN_VARIABLES:
            raise MigrationsError('migrations_extra_env: %s is set by the deploy itself (it tells the migration Jobs '
                                  'whether the secrets are new or were replaced on purpose); remove it' % key)
        env[str(key)] = str(value)
    if fresh_secrets and phase in ('pre', 'downtime'):
        env[FRESH_SECRETS_VARIABLE] = 'true'
    if encryption_keys_replaced:
        env[KEYS_REPLACED_VARIABLE] = 'true'
    script = {'pre': PRE_SCRIPT, 'post': POST_SCRIPT, 'downtime': DOWNTIME_SCRIPT}[phase]
    return {'command': ['/bin/sh', '-c', script], 'env': env}


def carries_fresh_secrets(job):
    """Whether a rendered migration Job carries the new-keys signal (FRESH_SECRETS_VARIABLE): its script then
    refuses a database that holds a schema (_SCHEMA_CHECK), so that Job succeeding proves the database was empty
    and it loaded the schema."""
    for container in (((job.get('spec') or {}).get('template') or {}).get('spec') or {}).get('containers') or []:
        for item in container.get('env') or []:
            if item.get('name') == FRESH_SECRETS_VARIABLE and item.get('value') == 'true':
                return True
    return False


def job_name_suffix(phase, fresh_secrets=False, encryption_keys_replaced=False):
    """What the Job's name adds for the plan's signals. A Job's template is immutable, and the signals
    change between two deploys of one version (a first install, then a re-run): a Job with other
    signals gets another name, so the apply creates it instead of failing on the completed one."""
    suffix = ''
    if fresh_secrets and phase in ('pre', 'downtime'):
        suffix += '-new-keys'
    if encryption_keys_replaced:
        suffix += '-rekeyed'
    return suffix


# ------------------------------------------------------------------------------------------- reading the Job's log
# ActiveRecord::Migration#announce (activerecord/lib/active_record/migration.rb, `announce`: text =
# "#{version} #{name}: #{message}", written as "== %s %s" % [text, "=" * [0, 75 - text.length].max]) around each
# migration: "migrating" before it runs, "migrated (1.2345s)" after it was recorded in schema_migrations
# (Migration#migrate). Written only while Migration.verbose, which `db:migrate` sets unless VERBOSE=false
# (ActiveRecord::Tasks::DatabaseTasks.migrate). The same lines in ActiveRecord 6.1 and Rails 8.
ANNOUNCE_LINE = re.compile(r'^== (\d+) ([A-Za-z0-9_:]+): (migrating|migrated|reverting|reverted)\b', re.MULTILINE)
# The pre-deployment script's own line (PRE_SCRIPT): the newest version in schema_migrations before it migrates.
SCHEMA_LINE = re.compile(r'^fediops: schema_version=(\d+|none)\s*$', re.MULTILINE)


def log_text(log):
    """The log as text: the API server's answer may have been decoded as JSON (a log of one number)."""
    if log is None:
        return ''
    return log if isinstance(log, str) else str(log)


def migration_progress(log):
    """What a migration Job's log says so far: {'current': (version, name) of the migration announced as
    migrating and not yet migrated, or None; 'done': [(version, name)...] in order; 'found': the schema version
    the pre-deployment script found (str, or None when none was printed or the database was empty)}."""
    text = log_text(log)
    current, done = None, []
    for version, name, what in ANNOUNCE_LINE.findall(text):
        if what in ('migrating', 'reverting'):
            current = (version, name)
        else:
            done.append((version, name))
            if current and current[0] == version:
                current = None
    found = [value for value in SCHEMA_LINE.findall(text) if value != 'none']
    return {'current': current, 'done': done, 'found': found[-1] if found else None}


def describe_progress(log):
    """One short phrase for the deploy's progress output: 'migration 20260728145403 UpdateAccountSummaries...'
    (the one running), 'migration X done, N so far' between two, or None when the log names none yet."""
    progress = migration_progress(log)
    if progress['current']:
        return 'migration %s %s' % progress['current']
    if progress['done']:
        return 'migration %s %s done, %d so far' % (progress['done'][-1] + (len(progress['done']),))
    return None


def schema_version_from_log(log):
    """The newest schema version a migration Job's log proves (a string of digits), or None: the newest of the
    version the pre-deployment script found (`fediops: schema_version=...`) and every migration the log shows as
    migrated. That is `max(schema_migrations.version)` after the Job (what Mastodon's zero-downtime floor in
    lib/tasks/db.rake compares), as far as the log tells; None for a log without either (a schema load on an
    empty database prints neither)."""
    progress = migration_progress(log)
    versions = [int(v) for v, dummy in progress['done']]
    if progress['found']:
        versions.append(int(progress['found']))
    return str(max(versions)) if versions else None
