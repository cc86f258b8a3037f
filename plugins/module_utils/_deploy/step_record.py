# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the steps of a deploy (steps.py) keep in the deploy record, what they learn from the migration Jobs'
live state, and the backup half of the point of no return (docs/dev/ARCHITECTURE.md sections 2 and 3).

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md.

Each step is a task of its own (its own worker process), and another step may have written the record since the
plan read it: every write here reads the record from the cluster first, then changes only what its step knows
(record.py's pure functions: start_entry continues the entry of a re-run of the same version and images, set_phase
never moves a phase back). The record holds versions, images, phases, times, schema versions and the restore
point's source and time: never a secret (record.write_record keeps only the keys it knows)."""

from __future__ import annotations

import copy

import datetime

from ansible_collections.fediops.mastodon.plugins.module_utils import _backups, _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.record import (
    mark_line_run, read_record, set_phase, start_entry, write_record)
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier, KubeError, job_log, job_state
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import status_message
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

# What the gate needs of the PostgreSQL cluster (its id for GET /v2/databases/{uuid}/backups, the rest for the
# restore commands of _backups.restore_commands): never a connection field (those hold the passwords).
CLUSTER_FIELDS = ('id', 'name', 'engine', 'version', 'region', 'size', 'num_nodes')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def cluster_facts(cluster):
    """The fields of the PostgreSQL cluster object (DigitalOcean's) that the handoff carries for the gate, or None."""
    if not isinstance(cluster, dict) or not cluster.get('id'):
        return None
    return dict((key, cluster.get(key)) for key in CLUSTER_FIELDS)


def images_of(ctx):
    """{'web': image, 'streaming': image} of the plan: what the record's entry is keyed on (with the version)."""
    if ctx.data.get('images'):
        return dict(ctx.data['images'])
    out = {}
    for component in ('web', 'streaming'):
        for obj in ctx.manifests.get(component) or []:
            if obj['kind'] == 'Deployment':
                out[component] = obj['spec']['template']['spec']['containers'][0]['image']
    return out


def writes(ctx):
    """Whether this step writes the record: never in check mode, nor without a cluster."""
    return bool(ctx.v['config_kubernetes']) and not ctx.check_mode


def _read(ctx):
    return read_record(ctx.client, ctx.v['config_namespace'], ctx.v['config_name'])


def _without_times(record):
    out = copy.deepcopy(record or {})
    for entry in [out.get('current') or {}] + list(out.get('history') or []):
        entry.pop('updated_at', None)
    return out


def _write(ctx, record, before=None):
    """Write the record, unless only its times would change (an idempotent re-run writes nothing)."""
    if before is not None and _without_times(before) == _without_times(record):
        return record
    write_record(ctx.client, ctx.v['config_namespace'], ctx.v['config_name'], ctx.data['labels'], record)
    return record


def _entry(ctx):
    """(the record as the cluster has it now, a copy with this deploy's entry current: started, or continued)."""
    before = _read(ctx)
    return before, start_entry(copy.deepcopy(before), ctx.data['version'], images_of(ctx), utcnow())


def ours(ctx, record):
    """The current entry of `record` if it is this deploy's (same version and images), else None."""
    current = (record or {}).get('current') or None
    if current and current.get('version') == ctx.data['version'] and current.get('images') == images_of(ctx):
        return current
    return None


def record_phase(ctx, phase, **fields):
    """Write the record: `phase` one of record.PHASES with `fields`, or 'finish' with `outcome` (ok|failed: ok
    becomes running when a migration Job was left running). Returns the current entry written, or None."""
    if not writes(ctx):
        return None
    if phase == 'finish':
        before = _read(ctx)
        record = copy.deepcopy(before)
        current = ours(ctx, record)
        if current is None:
            return None  # this deploy wrote no entry (it stopped before the config step): nothing to close
        outcome = fields['outcome']
        if outcome == 'ok' and current.get('migrations_running'):
            outcome = 'running'
        record = set_phase(record, current.get('phase') or 'config', utcnow(), outcome=outcome)
    else:
        before, record = _entry(ctx)
        record = set_phase(record, phase, utcnow(), **fields)
    return _write(ctx, record, before)['current']


def record_line_run(ctx):
    """The version's line into `lines_run`, written BEFORE the first pod of the new version can start (a pod that
    served one request may have created an account the older line cannot sign for: guards_upgrade.py)."""
    if not writes(ctx):
        return None
    before, record = _entry(ctx)
    return _write(ctx, mark_line_run(record, utcnow()), before)['current']


# ------------------------------------------------------------------ the migration Jobs, live
def declared_job(ctx, component):
    """The Job the plan rendered for migrate-pre or migrate-post."""
    for obj in ctx.manifests.get(component) or []:
        if obj['kind'] == 'Job':
            return obj
    return None


def live_job(ctx, component):
    """The Job of that phase as the cluster has it now, or None."""
    job = declared_job(ctx, component)
    if job is None:
        return None
    meta = job['metadata']
    status, body = ctx.client.request('GET', '/apis/batch/v1/namespaces/%s/jobs/%s' % (meta['namespace'], meta['name']))
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise KubeError('reading Job %s: HTTP %s: %s' % (meta['name'], status, status_message(body)), status=status)
    return dict(body, kind='Job')


def job_running(ctx, component):
    """'Job <name> running for 12 min, now at migration X' when the phase's Job is still running, else None."""
    job = live_job(ctx, component)
    if job is None or job_state(job)[0] != 'pending':
        return None
    activity = Applier(ctx.client, namespace=ctx.v['config_namespace'],
                       describe_job_log=_migrations.describe_progress).job_activity(job)
    return 'Job %s %s' % (job['metadata']['name'], activity)


def schema_version_of(ctx, component):
    """The schema version the phase's Job log proves (None when its log says nothing or is gone)."""
    job = declared_job(ctx, component)
    if job is None:
        return None
    return _migrations.schema_version_from_log(job_log(ctx.client, job))


def schema_loaded(ctx):
    """Whether the plan's pre-deployment Job loaded the schema into an empty database (a first install: nothing to
    go back to). Only the Job can prove it: it carries the new-keys signal, which makes its script refuse a database
    holding a schema (_migrations.carries_fresh_secrets), and it succeeded. That schema load records every
    post-deployment migration as run (Mastodon 4.4+: lib/active_record/database_tasks_extensions.rb:11-19,
    tests/data/mastodon/FACTS.md), so the post-deployment Job has nothing to undo. No trace of an instance in the
    namespace proves nothing: an existing database may be adopted under a new name with its own secrets."""
    job = declared_job(ctx, 'migrate-pre')
    if job is None or not _migrations.carries_fresh_secrets(job):
        return False
    live = live_job(ctx, 'migrate-pre')
    return live is not None and job_state(live)[0] == 'ok'


# ------------------------------------------------------------------ the backup gate
def backup_verdict(ctx, now=None):
    """(ok, message, restore_point, variable) of the backup half of the point of no return: DigitalOcean's
    backups of the plan's PostgreSQL cluster, or the operator's migrations_backup_confirmed_at. `variable` is the
    one to change when refused."""
    v = ctx.v
    now = now or utcnow()
    max_age = _backups.parse_max_age(v['migrations_backup_max_age'])
    if v['config_database_source'] == 'digitalocean':
        cluster = ctx.data.get('database_cluster')
        if not cluster:
            return (False, 'refusing the post-deployment migrations: the plan found no PostgreSQL cluster whose '
                           'backups could be checked', None, 'config_do_database_cluster')
        ok, message, point = _backups.do_backup_gate(ctx.do_client(v), cluster, now, max_age)
        # No backup, or none readable (API error): the cluster's; one too old: the age allowed.
        variable = 'config_do_database_cluster' if point is None or point['created_at'] > _backups.utc_text(now) \
            else _backups.MAX_AGE_VARIABLE
        return ok, message, point, variable
    ok, message, point = _backups.confirmed_backup_gate(v['migrations_backup_confirmed_at'], now, max_age)
    return ok, message, point, _backups.CONFIRMED_VARIABLE


def restore_point_entry(point):
    """What the record keeps of a restore point: its source, cluster and time (no command, nothing secret)."""
    if not point:
        return None
    return dict((key, point[key]) for key in ('source', 'cluster', 'created_at') if point.get(key))


def backup_check(ctx):
    """([ConfigError], message): the gate's refusal naming its variable, with the restore point and the restore
    commands when there is one; or no error and the message of the restore point (recorded in the record)."""
    ok, message, point, variable = backup_verdict(ctx)
    if ok:
        record_phase(ctx, 'rollout', restore_point=restore_point_entry(point))
        return [], message
    if point and point.get('doctl'):
        message += (' The newest restore point is the backup of %s: to go back to it, create a NEW cluster from it '
                    'with doctl: %s -- or with the API: %s' % (point['created_at'], point['doctl'], point['api']))
    return [ConfigError(variable, message)], message
