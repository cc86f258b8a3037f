# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The upgrade-path guard: which version changes the plan refuses, read from the deploy record.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md (sections 2 and 3).

Mastodon's schema only moves forward (../shared/reference/mastodon/README.md, "The 4.7 line" and
"Migrations"; docs/dev/ARCHITECTURE.md):

* pre-deployment migrations add what the new version needs, so the old version keeps working on the migrated
  schema: until the post-deployment migrations run, going back to the previous version is a rollback of the
  images. The post-deployment migrations remove what the old version needed: from then on only a database
  restore goes back.
* 4.7 closes the door earlier: accounts created by a 4.7 pod get their federation signing key only in the
  `keypairs` table, encrypted with the ActiveRecord encryption keys (app/models/account.rb:536,559-564 at 4.7;
  app/models/keypair.rb:25), and 4.6 signs only from `accounts.private_key` (app/models/account.rb:304-305 at
  4.6.5): once a 4.7 pod has run, 4.6 cannot sign for those accounts, post-deployment migrations or not.
* `lib/tasks/db.rake` refuses `db:migrate` with SKIP_POST_DEPLOYMENT_MIGRATIONS on a schema older than the
  release's zero-downtime floor (4.5/4.6: 2023_09_07_150100, the 4.2.0 schema, db.rake:69 at 4.6.5; 4.7:
  2024_10_07_071624, 4.3.0, db.rake:68-72), and a zero-downtime upgrade is made one minor at a time (the old
  version's pods serve on the new version's pre-deployment schema, which is only ever tried with the minor just
  before). Without downtime (web, streaming and Sidekiq stopped, every migration at once) Mastodon migrates from
  any older schema.
* 4.7.0's migrations do not re-run cleanly after an interruption (several use `disable_ddl_transaction!` with
  `algorithm: :concurrently`); 4.7.1 fixes that (its release notes): the 4.7 migrations run with 4.7.1 or later.

The rollback (_deploy/rollback.py, whose docstring says when going back by images is possible and why) plans the
previous version through this guard: every rollback it asks for passes here (a patch or minor back while the newer
version's post-deployment migrations have not run, no 4.7 pod before a return below 4.7), and it refuses on its own
the patch downgrade after them that this guard only warns about.

`upgrade_check(target, record, downtime)` -> (errors, warnings); `upgrade_guard` -> errors only. Every refusal
names config_mastodon_version, says why, and names the override that exists (and what it costs) or that none
does.
"""

from __future__ import annotations

import re

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_versions as _versions
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

VERSION_VARIABLE = 'config_mastodon_version'
DOWNTIME_VARIABLE = 'config_upgrade_with_downtime'
_RELEASE_RE = re.compile(r'\Av(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:@sha256:[0-9a-f]{64})?\Z')

# The first line whose pods write what an older line cannot read (see the module docstring).
KEYPAIRS_LINE = (4, 7)
# The first patch allowed to run a line's migrations.
MIGRATION_MINIMUM = {(4, 7): (4, 7, 1)}


def version_lines():
    """Mastodon's release lines in order, each with its zero-downtime floor (the schema version below which
    `db:migrate` with SKIP_POST_DEPLOYMENT_MIGRATIONS refuses), None where this collection does not know it.

    The supported lines and their floors are _mastodon_versions' data (lib/tasks/db.rake of each line); the older
    lines only give the order (a deploy from one of them still has to go one minor at a time)."""
    supported = [(_parse_line(line), _versions.zero_downtime_floor(line)[0]) for line in _versions.LINE_ORDER]
    older = [((4, minor), None) for minor in range(2, 8) if (4, minor) < supported[0][0]]
    return tuple(older + supported)


def parse_release(version):
    """(major, minor, patch, prerelease or None) of a release tag `vX.Y.Z[-pre][@sha256:...]`, or None."""
    match = _RELEASE_RE.match(version or '')
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4)


def line_text(line):
    return '%d.%d' % tuple(line)


def _line_of(version):
    parsed = parse_release(version)
    return parsed[:2] if parsed else None


def _parse_line(text):
    try:
        major, minor = (int(part) for part in str(text).split('.')[:2])
    except ValueError:
        return None
    return major, minor


def next_line(line):
    """The line after `line` in Mastodon's order (a new major follows the last known line), or None when
    `line` is the newest known."""
    known = [item for item, dummy in version_lines()]
    if line in known:
        later = known[known.index(line) + 1:]
        return later[0] if later else None
    return None


def floor_of(line):
    return dict(version_lines()).get(line)


def entries(record):
    """The record's entries, newest first: current, then history."""
    if not isinstance(record, dict):
        return []
    out = [record['current']] if isinstance(record.get('current'), dict) else []
    return out + [entry for entry in record.get('history') or [] if isinstance(entry, dict)]


def lines_that_ran(record):
    """The lines whose pods may have run (served requests, created accounts), from every entry."""
    found = set()
    for entry in entries(record):
        for text in entry.get('lines_run') or []:
            line = _parse_line(text)
            if line:
                found.add(line)
        # An entry past the pre-deployment phase rolled its pods out (partly at least).
        if entry.get('phase') in ('rollout', 'post') and _line_of(entry.get('version')):
            found.add(_line_of(entry['version']))
    return found


def lines_past_post(record):
    """{line: version} of the lines whose post-deployment migrations have run (or were left running)."""
    found = {}
    for entry in entries(record):
        line = _line_of(entry.get('version'))
        if line and entry.get('post_migrations') in ('done', 'running'):
            found.setdefault(line, entry['version'])
    return found


def schema_version(record):
    """The newest schema version any entry recorded (a string of 14 digits), or None."""
    versions = [str(entry['schema_version']) for entry in entries(record)
                if str(entry.get('schema_version') or '').isdigit()]
    return max(versions, key=int) if versions else None


def _restore_hint(name_of_record):
    return ('there is no override: only a restore of a database backup taken before then goes back (losing '
            'everything written since); after such a restore, delete the ConfigMap %s so that the plan stops '
            'holding the newer version against you' % name_of_record)


def upgrade_check(target, record, downtime=False, record_name='<config_name>-deploy-record'):
    """(errors, warnings) of deploying `target` (config_mastodon_version) over what `record` says has run.

    `record`: the deploy record (docs/dev/ARCHITECTURE.md section 2) or None (no record: nothing is known, so
    nothing is refused but the 4.7.0 images). `downtime`: config_upgrade_with_downtime."""
    errors, warnings = [], []
    parsed = parse_release(target)
    if parsed is None:
        # An image tag that is not a release (config_allow_unsupported_version): its line is unknown.
        if entries(record):
            warnings.append('%s %s is not a release tag: the upgrade path (downgrades, skipped minors, the '
                            'zero-downtime floor) cannot be checked' % (VERSION_VARIABLE, target))
        return errors, warnings
    line, numbers = parsed[:2], parsed[:3]

    minimum = MIGRATION_MINIMUM.get(line)
    if minimum and (numbers < minimum or (numbers == minimum and parsed[3])):
        errors.append(ConfigError(VERSION_VARIABLE, '%s cannot run the %s migrations: interrupted %s migrations do '
                                  'not re-run cleanly before v%d.%d.%d (its release notes; some migrations build '
                                  'indexes concurrently outside a transaction): deploy v%d.%d.%d or later; there is '
                                  'no override' % ((target.split('@')[0], line_text(line), line_text(line)) + minimum
                                                   + minimum)))

    if not entries(record):
        return errors, warnings
    current = entries(record)[0]
    current_version = current.get('version') or ''
    current_parsed = parse_release(current_version)
    ran = lines_that_ran(record)
    past_post = lines_past_post(record)

    newer_post = sorted(item for item in past_post if item > line)
    if newer_post:
        newest = newer_post[-1]
        errors.append(ConfigError(VERSION_VARIABLE, 'cannot go back to %s: the post-deployment migrations of %s (%s) '
                                  'have run and removed what %s needs; %s' % (
                                      line_text(line), line_text(newest), past_post[newest], line_text(line),
                                      _restore_hint(record_name))))
    if line < KEYPAIRS_LINE and any(item >= KEYPAIRS_LINE for item in ran):
        errors.append(ConfigError(VERSION_VARIABLE, 'cannot go back below %s: %s pods have run, and accounts created '
                                  'under %s have their signing key only in the encrypted keypairs table '
                                  '(app/models/account.rb:536,559-564), which %s cannot read: it could not sign '
                                  'for them; %s' % (
                                      line_text(KEYPAIRS_LINE), line_text(max(ran)), line_text(KEYPAIRS_LINE),
                                      line_text(line), _restore_hint(record_name))))

    deployed = max(ran) if ran else None
    if deployed and line > deployed:
        expected = next_line(deployed)
        if expected is not None and line > expected:
            if downtime:
                warnings.append('%s skips from %s to %s: with %s every migration runs at once while web, streaming '
                                'and Sidekiq are stopped' % (VERSION_VARIABLE, line_text(deployed), line_text(line),
                                                             DOWNTIME_VARIABLE))
            else:
                errors.append(ConfigError(VERSION_VARIABLE, '%s would skip %s: a zero-downtime upgrade goes one minor '
                                          'at a time (Mastodon: deploy at least one release of every minor, so that the '
                                          '%s pods never run on a schema made for %s); deploy the newest %s release '
                                          'first, or set %s: true to upgrade at once with downtime (web, streaming and '
                                          'Sidekiq stopped while every migration runs)' % (
                                              line_text(line), ', '.join(line_text(item) for item in _between(deployed, line)),
                                              line_text(deployed), line_text(line), line_text(expected),
                                              DOWNTIME_VARIABLE)))

    schema = schema_version(record)
    floor = floor_of(line)
    if schema and floor and int(schema) < int(floor) and not downtime:
        errors.append(ConfigError(VERSION_VARIABLE, 'the database schema (%s) is older than %s\'s zero-downtime floor '
                                  '(%s): Mastodon refuses its pre-deployment migrations on it (lib/tasks/db.rake); '
                                  'upgrade through the releases in between first, or set %s: true to migrate at once '
                                  'with downtime (web, streaming and Sidekiq stopped while every migration runs)'
                                  % (schema, line_text(line), floor, DOWNTIME_VARIABLE)))

    if current_parsed and current_parsed[:2] == line and current_parsed[:3] > numbers:
        warnings.append('%s %s is older than %s, which this instance runs (or last tried): the migrations of the '
                        'newer patch stay in the database, and the older patch lacks its fixes (patch releases '
                        'carry security fixes)' % (VERSION_VARIABLE, target.split('@')[0], current_version.split('@')[0]))
    return errors, warnings


def _between(low, high):
    """The known lines strictly between two lines."""
    return [item for item, dummy in version_lines() if low < item < high] or [high]


def upgrade_guard(target_version, record, downtime=False, record_name='<config_name>-deploy-record'):
    """The refusals of upgrade_check: [ConfigError], each naming config_mastodon_version."""
    return upgrade_check(target_version, record, downtime, record_name)[0]


def check_upgrade_path(v, record):
    """The plan's guard (before any write): PlanError with every refusal; returns the warnings.

    With config_upgrade_with_downtime: true the skipped minor and the schema below the floor are allowed: the deploy
    then stops web, streaming and Sidekiq and runs every migration at once (_deploy/downtime.py)."""
    errors, warnings = upgrade_check(v['config_mastodon_version'], record, v['config_upgrade_with_downtime'],
                                     '%s-deploy-record' % v['config_name'])
    if errors:
        raise PlanError(errors, 'the upgrade path is refused')
    return warnings
