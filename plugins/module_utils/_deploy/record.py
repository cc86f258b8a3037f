# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy record: what has run against this instance's database (docs/dev/ARCHITECTURE.md section 2).

PRIVATE: no API guarantees.

A ConfigMap `<name>-deploy-record` in the instance's namespace, key `record.json`, outside every ApplySet (so no
prune ever removes it): the version being deployed (`current`) and the older entries (`history`, newest first,
at most HISTORY_LIMIT). The upgrade guard (guards_upgrade.py) reads it: which lines have had pods running,
whose post-deployment migrations have run, the newest schema version a migration Job reported.

It holds versions, image references, phases, times and schema versions: never a secret or anything derived from
one (write_record refuses keys it does not know, so nothing else slips in).

The functions that change it are pure (they return a new record); read_record and write_record talk to the API
server (`client`: _kube.KubeClient or anything with its `request`).
"""

from __future__ import annotations

import copy
import json

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import APPLY_PATCH, KubeError, status_message
from ansible_collections.fediops.mastodon.plugins.module_utils._migrations import carries_fresh_secrets, schema_version_from_log

KEY = 'record.json'
HISTORY_LIMIT = 20
FIELD_MANAGER = 'fediops.mastodon'
PHASES = ('config', 'pre', 'rollout', 'post')
POST_STATES = ('done', 'running', 'pending', 'held')  # running: the post Job was left running
OUTCOMES = ('running', 'ok', 'failed', 'rolled-back')  # rolled-back: _deploy/rollback.py
ENTRY_KEYS = ('version', 'images', 'phase', 'post_migrations', 'previous_version', 'schema_version', 'started_at',
              'updated_at', 'lines_run', 'outcome', 'migrations_running', 'restore_point', 'rolled_back_from',
              'running_job', 'schema_loaded')


class RecordError(KubeError):
    """The record cannot be read or written; the message names the ConfigMap."""


def record_name(name):
    return '%s-deploy-record' % name


def _path(client, namespace, name):
    return client.path('v1', 'ConfigMap', namespace, record_name(name))


def read_record(client, namespace, name):
    """The record of instance `name` (dict with 'current' and 'history'), or None when there is none yet."""
    status, body = client.request('GET', _path(client, namespace, name))
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise RecordError('ConfigMap %s/%s (the deploy record): HTTP %s: %s'
                          % (namespace, record_name(name), status, status_message(body)), status=status)
    text = (body.get('data') or {}).get(KEY)
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise RecordError('ConfigMap %s/%s: %s is not JSON: repair or delete it (the upgrade guard reads it)'
                          % (namespace, record_name(name), KEY))
    if not isinstance(record, dict):
        raise RecordError('ConfigMap %s/%s: %s is not a JSON object' % (namespace, record_name(name), KEY))
    record.setdefault('current', None)
    record.setdefault('history', [])
    return record


def _line(version):
    parts = (version or '').lstrip('v').split('@')[0].split('.')
    return '.'.join(parts[:2]) if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) else None


def start_entry(record, version, images, now):
    """A new record whose `current` is a deploy of `version` starting now; the previous current goes to history.

    A re-run of the same version (the current entry has that version and images) continues its entry instead:
    the phase reached, the post-deployment state and the lines that ran stay."""
    record = copy.deepcopy(record) if record else {'current': None, 'history': []}
    current = record.get('current')
    stamp = _stamp(now)
    if current and current.get('version') == version and current.get('images') == dict(images or {}):
        current['outcome'] = 'running'
        current['updated_at'] = stamp
        return record
    entry = {'version': version, 'images': dict(images or {}), 'phase': 'config', 'post_migrations': 'pending',
             'previous_version': (current or {}).get('version'), 'schema_version': (current or {}).get('schema_version'),
             'started_at': stamp, 'updated_at': stamp, 'lines_run': [], 'outcome': 'running'}
    history = list(record.get('history') or [])
    if current:
        history.insert(0, current)
    record['current'] = entry
    record['history'] = history[:HISTORY_LIMIT]
    return record


def set_phase(record, phase, now=None, **fields):
    """A new record whose current entry reached `phase` (one of PHASES), with `fields` set (post_migrations,
    schema_version, outcome, migrations_running, ...). A phase never moves back: set_phase(r, 'pre') after
    'rollout' keeps 'rollout' (a re-run of an earlier step must not hide what has run)."""
    if phase not in PHASES:
        raise ValueError('phase must be one of %s, not %r' % (', '.join(PHASES), phase))
    unknown = set(fields) - set(ENTRY_KEYS)
    if unknown:
        raise ValueError('unknown record field(s): %s' % ', '.join(sorted(unknown)))
    record = copy.deepcopy(record)
    current = record.get('current')
    if not current:
        raise ValueError('the record has no current entry: start_entry first')
    if PHASES.index(phase) > PHASES.index(current.get('phase') or 'config'):
        current['phase'] = phase
    for key, value in fields.items():
        if key == 'post_migrations' and value not in POST_STATES:
            raise ValueError('post_migrations must be one of %s' % ', '.join(POST_STATES))
        if key == 'outcome' and value not in OUTCOMES:
            raise ValueError('outcome must be one of %s' % ', '.join(OUTCOMES))
        if key == 'schema_version' and value is None:
            continue  # a Job whose log told nothing keeps what was known
        if key == 'lines_run':
            value = sorted(set(current.get('lines_run') or []) | set(value), key=lambda t: [int(p) for p in t.split('.')])
        current[key] = value
    if now is not None:
        current['updated_at'] = _stamp(now)
    return record


def mark_line_run(record, now=None):
    """The record with the current version's line in `lines_run`: call it BEFORE the first pod of the new version
    can start (the web step, before it writes the Deployment), since a pod that served one request may have
    created an account the older line cannot sign for (guards_upgrade.py)."""
    current = (record or {}).get('current') or {}
    line = _line(current.get('version'))
    if not line:
        return copy.deepcopy(record)
    return set_phase(record, current.get('phase') or 'config', now, lines_run=[line])


def _stamp(now):
    if now is None:
        return None
    if hasattr(now, 'strftime'):
        return now.strftime('%Y-%m-%dT%H:%M:%SZ')
    return str(now)


def _clean(record):
    """Only the known keys of each entry: nothing else (a secret by mistake) reaches the ConfigMap."""
    def entry(item):
        if not isinstance(item, dict):
            return None
        out = dict((k, item[k]) for k in ENTRY_KEYS if k in item)
        images = out.get('images')
        if isinstance(images, dict):
            out['images'] = dict((str(k), str(v)) for k, v in images.items())
        return out
    history = [entry(item) for item in (record.get('history') or [])][:HISTORY_LIMIT]
    return {'current': entry(record.get('current')), 'history': [item for item in history if item]}


def render_record(namespace, name, labels, record):
    """The ConfigMap of the record (for a server-side apply)."""
    text = json.dumps(_clean(record), indent=1, sort_keys=True)
    return {'apiVersion': 'v1', 'kind': 'ConfigMap',
            'metadata': {'name': record_name(name), 'namespace': namespace, 'labels': dict(labels or {}),
                         'annotations': {'fediops.mastodon/what': 'the deploy record: versions and migration phases '
                                                                  'that have run (read by the upgrade guard); never '
                                                                  'pruned; delete it only after a database restore'}},
            'data': {KEY: text}}


def write_record(client, namespace, name, labels, record, check_mode=False):
    """Server-side apply of the record's ConfigMap (no ApplySet label: no prune removes it). Returns the object."""
    obj = render_record(namespace, name, labels, record)
    query = {'fieldManager': FIELD_MANAGER, 'force': 'true'}
    if check_mode:
        query['dryRun'] = 'All'
    status, body = client.request('PATCH', _path(client, namespace, name), query, body=obj, content_type=APPLY_PATCH)
    if status not in (200, 201):
        raise RecordError('ConfigMap %s/%s (the deploy record): HTTP %s: %s'
                          % (namespace, record_name(name), status, status_message(body)), status=status)
    return body


class RecordKeeper(object):
    """Keeps the record while the components of one deploy are applied (Deploy.apply; the steps of
    docs/dev/ARCHITECTURE.md section 1 call the same methods): each method writes the record at once, so an
    interrupted deploy leaves it at the phase it reached.

    `record`: what the plan read (None: no record yet); `job_log(job) -> text`: the log of a finished Job."""

    def __init__(self, client, namespace, name, labels, record, version, images, now, job_log=None):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.labels = labels
        self.record = record
        self.version = version
        self.images = images
        self.now = now
        self.job_log = job_log
        self.started = False

    def _write(self, record):
        write_record(self.client, self.namespace, self.name, self.labels, record)
        self.record = record

    def start(self):
        """A new entry (or the continued one of a re-run of the same version); the namespace must exist."""
        if not self.started:
            self._write(start_entry(self.record, self.version, self.images, self.now()))
            self.started = True

    def before(self, component):
        """Before a component is applied: the web step marks the line as run before any new pod can start."""
        if component != 'config':
            self.start()
        if component in ('web', 'streaming', 'sidekiq'):
            self._write(mark_line_run(self.record, self.now()))

    def after(self, component, result, objects=()):
        """After a component was applied and waited for (result: the Applier's; objects: the declared ones)."""
        self.start()
        running = bool(result.get('running_jobs'))
        if component in ('migrate-pre', 'migrate-post'):
            phase = 'pre' if component == 'migrate-pre' else 'post'
            fields = {'migrations_running': phase if running else None}
            if not running:
                fields['schema_version'] = self._schema_version(objects)
            if phase == 'pre':
                # the Job a re-run must render as it is (guards.first_install_job), as the steps record it
                fields['running_job'] = result['running_jobs'][0]['name'] if running else None
            if not running and phase == 'pre':
                # it succeeded: with the new-keys signal, on an empty database (a first install)
                fields['schema_loaded'] = any(o.get('kind') == 'Job' and carries_fresh_secrets(o) for o in objects or ())
            if phase == 'post':
                fields['post_migrations'] = 'running' if running else 'done'
            # A pre-deployment Job still running has not reached its phase: the entry stays where it was.
            self._write(set_phase(self.record, ('config' if running and phase == 'pre' else
                                                'rollout' if running else phase), self.now(), **fields))
        elif component == 'sidekiq':
            self._write(set_phase(self.record, 'rollout', self.now()))

    def finish(self, outcome):
        if self.started:
            self._write(set_phase(self.record, 'config', self.now(), outcome=outcome))

    def _schema_version(self, objects):
        """What the phase's Job log says of the schema (the Job found by its name: its pods carry job-name)."""
        if self.job_log is None:
            return None
        for obj in objects or []:
            if obj.get('kind') == 'Job':
                return schema_version_from_log(self.job_log(obj))
        return None


def keeper_failed(keeper):
    """Record a failed deploy, best effort: a record that cannot be written must not hide the failure itself."""
    try:
        keeper.finish('failed')
    except KubeError:
        pass
