# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Is there a recent backup to go back to? The backup half of the point-of-no-return gate.

Post-deployment migrations cannot be undone by deploying the old version again (4.7's blank the old key columns and
merge duplicate accounts); the only way back is the database as it was. So before them the gate asks for a restore
point no older than ``migrations_backup_max_age``:

- DigitalOcean (``config_database_source: digitalocean``): the newest of DigitalOcean's own backups
  (``DigitalOceanClient.database_backups``: GET /v2/databases/{uuid}/backups), ``do_backup_gate``/``backup_gate``;
- an explicit database: the operator names the time of a backup they made in ``migrations_backup_confirmed_at``,
  ``confirmed_backup_gate``.

Every function returns ``(ok, message, restore_point)``; it never raises for a missing, stale or unreadable backup:
those are refusals whose message says what to do. The message of a DigitalOcean restore point carries the restore
commands: a NEW cluster from that backup (the running cluster is never touched), with doctl and with the API.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.
"""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

MAX_AGE_VARIABLE = 'migrations_backup_max_age'
CONFIRMED_VARIABLE = 'migrations_backup_confirmed_at'
# DigitalOcean takes PostgreSQL backups daily ("automated daily backups", databases_create_cluster.yml;
# scheduled_backup_time.backup_interval_hours 24 in responses/database_backups.yml), so the newest completed one is
# up to 24 h old just before the next, and that next one is listed only once it completes (backup_progress shows it
# running meanwhile: minutes for a small database, longer for a large one). 24 h + 2 h lets a deploy pass at any
# hour while the daily schedule works, and refuses as soon as one daily backup is missing (the newest then 48 h old).
DEFAULT_MAX_AGE = '26h'
# A backup stamped in the future by more than this means a wrong clock here or there: refuse rather than guess.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# Single optional spaces, matched on the stripped text: runs of \s* side by side backtrack quadratically on spaces.
_DURATION = re.compile(r'\A(?:(?P<d>\d+) ?d)? ?(?:(?P<h>\d+) ?h)? ?(?:(?P<m>\d+) ?m)?\Z')
# ISO 8601 combined date and time in UTC, as DigitalOcean writes created_at (models/backup.yml: 2019-01-31T19:25:22Z)
_TIMESTAMP = re.compile(r'\A(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})\Z')


def parse_max_age(value, variable=MAX_AGE_VARIABLE):
    """Seconds from a duration such as 26h, 90m, 1d or 1d2h (an int is taken as seconds). ConfigError naming the
    variable otherwise, or when it is not positive."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(value.strip()) if isinstance(value, str) else None
        if not match or not any(match.groupdict().values()):
            raise ConfigError(variable, 'must be a duration in days, hours and minutes such as 26h, 90m or 1d2h')
        parts = dict((k, int(v or 0)) for k, v in match.groupdict().items())
        seconds = parts['d'] * 86400 + parts['h'] * 3600 + parts['m'] * 60
    if seconds <= 0:
        raise ConfigError(variable, 'must be longer than zero')
    return seconds


def parse_timestamp(text):
    """An aware UTC datetime from ISO 8601 text with a zone (2026-12-05T03:10:00Z, ...+01:00), else None."""
    match = _TIMESTAMP.match(text.strip()) if isinstance(text, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match.group(n)) for n in range(1, 7))
    zone = match.group(7)
    offset = datetime.timedelta(0)
    if zone != 'Z':
        sign = -1 if zone[0] == '-' else 1
        digits = zone[1:].replace(':', '')
        offset = sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    try:
        when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone(offset))
    except ValueError:
        return None
    return when.astimezone(datetime.timezone.utc)


def utc_text(when):
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def _age_text(seconds):
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours >= 48:
        return '%d days %d h' % (hours // 24, hours % 24)
    return '%d h %02d min' % (hours, rest // 60)


def _max_age_text(max_age):
    return '%s (%s)' % (MAX_AGE_VARIABLE, _age_text(max_age))


def restore_commands(cluster, created_at):
    """How to create a NEW cluster from the backup taken at created_at (aware datetime) of cluster (a DigitalOcean
    cluster object: name, engine, version, region, size, num_nodes): the doctl command and the API request.

    doctl databases create <new> --restore-from-cluster-name <name> --restore-from-timestamp '<ts>' takes the time
    as "2006-01-02 15:04:05 +0000 UTC" (doctl's reference for databases create); the API takes POST /v2/databases
    with backup_restore {database_name, backup_created_at} next to the new cluster's attributes
    (databases_create_cluster.yml, models/database_backup.yml). Neither touches the running cluster.
    """
    name = cluster.get('name') or '<cluster-name>'
    new_name = '%s-restored-%s' % (name, created_at.strftime('%Y%m%d%H%M'))
    attributes = [('engine', cluster.get('engine') or 'pg'), ('version', cluster.get('version')),
                  ('region', cluster.get('region')), ('size', cluster.get('size')), ('num_nodes', cluster.get('num_nodes'))]
    attributes = [(key, value) for key, value in attributes if value not in (None, '')]
    doctl = ("doctl databases create %s --restore-from-cluster-name %s --restore-from-timestamp '%s'"
             % (new_name, name, created_at.strftime('%Y-%m-%d %H:%M:%S +0000 UTC')))
    doctl += ''.join(' --%s %s' % (key.replace('_', '-'), value) for key, value in attributes)
    body = dict(name=new_name)
    body.update(attributes)
    body['backup_restore'] = dict(database_name=name, backup_created_at=utc_text(created_at))
    api = 'POST /v2/databases %s' % json.dumps(body, sort_keys=False, separators=(', ', ': '))
    return dict(new_name=new_name, doctl=doctl, api=api)


def _schedule_text(answer, now):
    """When DigitalOcean takes the next backup, from scheduled_backup_time, or ''."""
    schedule = answer.get('scheduled_backup_time') if isinstance(answer, dict) else None
    if not isinstance(schedule, dict) or not isinstance(schedule.get('backup_hour'), int):
        return ''
    hour, minute = schedule['backup_hour'], schedule.get('backup_minute') or 0
    interval = schedule.get('backup_interval_hours')
    text = ' DigitalOcean backs it up %s at %02d:%02d UTC' % (
        'daily' if interval in (None, 24) else 'every %s hours' % interval, hour, minute)
    if answer.get('backup_progress') not in (None, ''):
        text += '; a backup is running now (%s%% done)' % answer['backup_progress']
    return text + '.'


def backup_gate(backups, now, max_age, cluster=None):
    """(ok, message, restore_point) from DigitalOcean's backups of the PostgreSQL cluster.

    backups: the answer of DigitalOceanClient.database_backups (or its `backups` list); now: an aware datetime;
    max_age: seconds (parse_max_age); cluster: the cluster object, for its name and the restore commands.
    ok when the newest backup is at most max_age old; refused when there is none, when it is older, or when it is
    stamped in the future (a clock is wrong). restore_point: {source, cluster, created_at, age_seconds,
    size_gigabytes, doctl, api} of the newest backup, None when there is none.
    """
    cluster = cluster or {}
    name = cluster.get('name') or cluster.get('id') or 'the PostgreSQL cluster'
    answer = backups if isinstance(backups, dict) else dict(backups=backups)
    listed = [b for b in answer.get('backups') or [] if isinstance(b, dict)]
    dated = [(parse_timestamp(b.get('created_at')), b) for b in listed]
    dated = [(when, b) for when, b in dated if when is not None]
    schedule = _schedule_text(answer, now)
    if not dated:
        return (False, 'refusing the post-deployment migrations: database cluster %r has no backup to go back to '
                       '(DigitalOcean lists %s).%s Run the deploy again once its first backup is listed, or set '
                       'migrations_post: hold to finish the deploy without them for now.'
                % (name, 'none' if not listed else '%d without a readable created_at' % len(listed), schedule), None)
    created, newest = max(dated, key=lambda item: item[0])
    age = (now - created).total_seconds()
    commands = restore_commands(cluster, created)
    point = dict(source='digitalocean', cluster=name, created_at=utc_text(created), age_seconds=int(age),
                 size_gigabytes=newest.get('size_gigabytes'), doctl=commands['doctl'], api=commands['api'])
    if created - now > CLOCK_SKEW:
        return (False, 'refusing the post-deployment migrations: the newest backup of %r is stamped %s, in the future '
                       'of this controller\'s clock (%s): check the clock before trusting any backup age.'
                % (name, point['created_at'], utc_text(now)), point)
    if age > max_age:
        return (False, 'refusing the post-deployment migrations: the newest backup of %r is from %s, %s ago, older '
                       'than %s.%s After the post-deployment migrations the only way back is a restore, which would '
                       'lose everything since that backup. Run the deploy again after the next backup, or raise %s '
                       'if losing that much is acceptable.'
                % (name, point['created_at'], _age_text(age), _max_age_text(max_age), schedule, MAX_AGE_VARIABLE),
                point)
    return (True, 'restore point: backup of %r from %s (%s ago, within %s). To go back to it, create a NEW cluster '
                  'from that backup (the running one is left as it is) with doctl: %s -- or with the API: %s -- then '
                  'point config_do_database_cluster at the new cluster and deploy the previous version.'
            % (name, point['created_at'], _age_text(age), _max_age_text(max_age), point['doctl'], point['api']),
            point)


def backup_refused(error, cluster=None):
    """The refusal for a DigitalOcean API error while listing the backups (DigitalOceanError or its text)."""
    name = (cluster or {}).get('name') or 'the PostgreSQL cluster'
    return (False, 'refusing the post-deployment migrations: the backups of %r could not be read, so there is no known '
                   'restore point: %s' % (name, error), None)


def do_backup_gate(client, cluster, now, max_age):
    """backup_gate on what client.database_backups(cluster['id']) answers; an API error is a refusal."""
    try:
        answer = client.database_backups(cluster['id'])
    except DigitalOceanError as exc:
        return backup_refused(exc, cluster)
    return backup_gate(answer, now, max_age, cluster)


def confirmed_backup_gate(confirmed_at, now, max_age):
    """(ok, message, restore_point) for an explicit database: the operator's migrations_backup_confirmed_at.

    Absent -> refused naming the variable; not an ISO 8601 time with a zone -> refused naming it (the value is not
    echoed); older than max_age, or in the future -> refused. restore_point: {source: operator, created_at,
    age_seconds}.
    """
    if confirmed_at in (None, ''):
        return (False, 'refusing the post-deployment migrations: the database is not DigitalOcean\'s, so its backups '
                       'cannot be checked here. Make a backup you can restore (pg_dump or your provider\'s snapshot), '
                       'then confirm it by setting %s to the time it was taken, in UTC (for example %s: '
                       '"2026-12-05T03:00:00Z"); or set migrations_post: hold to finish the deploy without them for now.'
                % (CONFIRMED_VARIABLE, CONFIRMED_VARIABLE), None)
    when = parse_timestamp(confirmed_at)
    if when is None:
        return (False, 'refusing the post-deployment migrations: %s must be an ISO 8601 date and time with its zone, '
                       'such as "2026-12-05T03:00:00Z" (quote it in YAML)' % CONFIRMED_VARIABLE, None)
    age = (now - when).total_seconds()
    point = dict(source='operator', created_at=utc_text(when), age_seconds=int(age))
    if when - now > CLOCK_SKEW:
        return (False, 'refusing the post-deployment migrations: %s is %s, in the future of this controller\'s clock '
                       '(%s)' % (CONFIRMED_VARIABLE, point['created_at'], utc_text(now)), point)
    if age > max_age:
        return (False, 'refusing the post-deployment migrations: the backup confirmed by %s is from %s, %s ago, older '
                       'than %s. Make a new backup and set %s to its time, or raise %s if losing everything since '
                       'then is acceptable.'
                % (CONFIRMED_VARIABLE, point['created_at'], _age_text(age), _max_age_text(max_age), CONFIRMED_VARIABLE,
                   MAX_AGE_VARIABLE), point)
    return (True, 'restore point: the backup confirmed by %s, from %s (%s ago, within %s). To go back, restore it into '
                  'a new database and point the config_db_* variables at it, then deploy the previous version.'
            % (CONFIRMED_VARIABLE, point['created_at'], _age_text(age), _max_age_text(max_age)), point)
