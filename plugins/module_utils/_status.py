# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a Mastodon deployment runs right now, read from the cluster (fediops.mastodon.mastodon_status).

Five GETs, nothing written: the Deployments and the Pods (running versions, rollout state), the Jobs (last
migration per phase and its outcome) of the instance (label ``app.kubernetes.io/instance=<name>``), the
database CA Secret ``<name>-db-ca`` (its certificate's expiry) and the deploy record, the ConfigMap
``<name>-deploy-record`` (key ``record.json``: the deploy's version, phase, outcome and whether post-deployment
migrations are still to run; docs/dev/ARCHITECTURE.md section 2). With an update check URL, one more GET there
(``_update_check.check_updates``): newer releases and whether one is urgent. ``render_table`` makes the compact
table.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.
"""

from __future__ import annotations

import datetime
import json

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError, status_message
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import job_state, rollout_state
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_secret_info import secret_path
from ansible_collections.fediops.mastodon.plugins.module_utils._update_check import check_updates
from ansible_collections.fediops.mastodon.plugins.module_utils._x509 import (
    X509Error, decode_base64_pem, load_certificate, not_valid_after)

INSTANCE_LABEL = 'app.kubernetes.io/instance'
COMPONENT_LABEL = 'app.kubernetes.io/component'
VERSION_LABEL = 'app.kubernetes.io/version'
CA_KEY = 'ca.crt'
CA_WARN_DAYS = 30
MIGRATION_PHASES = ('pre', 'post', 'downtime')  # downtime: the Job of config_upgrade_with_downtime
RECORD_KEY = 'record.json'
# current.post_migrations of the deploy record: done, running (their Job outlived migrations_wait_timeout and was
# left running), or still to run (pending: the deploy has not reached them; held: migrations_post was hold)
POST_MIGRATIONS_TO_RUN = ('pending', 'held')
POST_MIGRATIONS_RUNNING = 'running'
# current.migrations_running: the phase (pre|post) whose Job a deploy left running; a re-run re-attaches to it
RECORD_FIELDS = ('version', 'previous_version', 'phase', 'outcome', 'post_migrations', 'schema_version', 'started_at',
                 'updated_at', 'migrations_running')


def image_version(image):
    """The tag (or the short digest) of an image reference: ghcr.io/mastodon/mastodon:v4.5.2 -> v4.5.2."""
    if not image:
        return ''
    if '@' in image:
        return image.split('@', 1)[1][:19]
    last = image.rsplit('/', 1)[-1]
    return last.split(':', 1)[1] if ':' in last else 'latest'


def _items(client, path, selector):
    status, body = client.request('GET', path, query={'labelSelector': selector})
    if status == 404:
        return []
    if status != 200 or not isinstance(body, dict):
        raise KubeError('GET %s: HTTP %s: %s' % (path, status, status_message(body)), status=status)
    return body.get('items') or []


def _matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _component(obj, name):
    meta = obj.get('metadata') or {}
    short = meta.get('name', '')
    if short.startswith(name + '-'):
        short = short[len(name) + 1:]
    return short or (meta.get('labels') or {}).get(COMPONENT_LABEL, '')


def _ready(pod):
    return any(c.get('type') == 'Ready' and c.get('status') == 'True'
               for c in ((pod.get('status') or {}).get('conditions') or []))


def component_status(deployment, pods, name):
    """One Deployment: desired and running versions, replicas and its rollout state."""
    spec = deployment.get('spec') or {}
    status = deployment.get('status') or {}
    containers = ((spec.get('template') or {}).get('spec') or {}).get('containers') or [{}]
    desired = image_version(containers[0].get('image'))
    selector = (spec.get('selector') or {}).get('matchLabels') or {}
    running, serving = set(), set()
    for pod in pods:
        if not _matches(selector, (pod.get('metadata') or {}).get('labels') or {}):
            continue
        if (pod.get('status') or {}).get('phase') not in ('Running', 'Pending'):
            continue
        pod_containers = ((pod.get('spec') or {}).get('containers')) or [{}]
        running.add(image_version(pod_containers[0].get('image')))
        # Serving: Ready and not terminating, as the EndpointSlice controller counts a ready endpoint.
        if _ready(pod) and not (pod.get('metadata') or {}).get('deletionTimestamp'):
            serving.add(image_version(pod_containers[0].get('image')))
    state, message = rollout_state(dict(deployment, kind='Deployment'))
    rollout = {'ok': 'complete', 'pending': 'progressing', 'failed': 'failed'}[state]
    return dict(
        component=_component(deployment, name),
        deployment=(deployment.get('metadata') or {}).get('name'),
        version=desired,
        running_versions=sorted(running),
        serving_versions=sorted(serving),
        replicas=spec.get('replicas', 1),
        ready_replicas=status.get('readyReplicas', 0),
        updated_replicas=status.get('updatedReplicas', 0),
        rollout=rollout,
        message=message,
    )


def _phase(job, name):
    labels = (job.get('metadata') or {}).get('labels') or {}
    component = labels.get(COMPONENT_LABEL, '')
    job_name = (job.get('metadata') or {}).get('name', '')
    for phase in MIGRATION_PHASES:
        if component == 'migrations-' + phase or job_name.startswith('%s-migrate-%s-' % (name, phase)):
            return phase
    return None


def _parse_time(text):
    if not text:
        return None
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)


def _failure(job, pods):
    """Why a Job failed, in a few words: its condition's reason and its pod's exit code and message."""
    reason = ''
    for cond in (job.get('status') or {}).get('conditions') or []:
        if cond.get('type') == 'Failed' and cond.get('status') == 'True':
            reason = cond.get('reason') or ''
    job_name = (job.get('metadata') or {}).get('name')
    for pod in pods:
        if ((pod.get('metadata') or {}).get('labels') or {}).get('job-name') != job_name:
            continue
        for container in (pod.get('status') or {}).get('containerStatuses') or []:
            terminated = (container.get('state') or {}).get('terminated') or {}
            if terminated.get('exitCode'):
                detail = 'exit code %s' % terminated['exitCode']
                if terminated.get('message') or terminated.get('reason'):
                    detail += ': %s' % (terminated.get('message') or terminated.get('reason'))
                return '%s, %s' % (reason, detail) if reason else detail
    return reason or 'failed'


def migration_status(job, pods=()):
    """One migration Job: its version, outcome (succeeded, failed, running) and when it finished."""
    meta = job.get('metadata') or {}
    status = job.get('status') or {}
    state, message = job_state(dict(job, kind='Job'))
    if state == 'failed':
        message = _failure(job, pods)
    started = _parse_time(status.get('startTime'))
    finished = _parse_time(status.get('completionTime'))
    if finished is None:
        for cond in status.get('conditions') or []:
            if cond.get('type') == 'Failed' and cond.get('status') == 'True':
                finished = _parse_time(cond.get('lastTransitionTime'))
    containers = (((job.get('spec') or {}).get('template') or {}).get('spec') or {}).get('containers') or [{}]
    return dict(
        job=meta.get('name'),
        version=(meta.get('labels') or {}).get(VERSION_LABEL) or image_version(containers[0].get('image')),
        outcome={'ok': 'succeeded', 'pending': 'running', 'failed': 'failed'}[state],
        created=meta.get('creationTimestamp'),
        finished=finished.strftime('%Y-%m-%dT%H:%M:%SZ') if finished else None,
        duration_seconds=int((finished - started).total_seconds()) if finished and started else None,
        message=message,
    )


def database_ca_status(client, namespace, name, now=None):
    """The database CA Secret's certificate: subject and expiry, or present=False when there is none."""
    secret_name = '%s-db-ca' % name
    status, body = client.request('GET', secret_path(namespace, secret_name))
    if status == 404:
        return dict(secret=secret_name, present=False, state='absent')
    if status != 200 or not isinstance(body, dict):
        raise KubeError('Secret %s/%s: HTTP %s: %s' % (namespace, secret_name, status, status_message(body)),
                        status=status)
    encoded = (body.get('data') or {}).get(CA_KEY)
    if not encoded:
        return dict(secret=secret_name, present=True, state='invalid', message='the Secret has no %s' % CA_KEY)
    try:
        cert = load_certificate(decode_base64_pem(encoded, what='%s %s' % (secret_name, CA_KEY)),
                                what='%s %s' % (secret_name, CA_KEY))
    except X509Error as exc:
        return dict(secret=secret_name, present=True, state='invalid', message=str(exc))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    after = not_valid_after(cert)
    days = int((after - now).total_seconds() // 86400)
    state = 'expired' if after <= now else ('expires soon' if days < CA_WARN_DAYS else 'ok')
    return dict(secret=secret_name, present=True, subject=cert.subject.rfc4514_string(),
                not_after=after.strftime('%Y-%m-%dT%H:%M:%SZ'), days_left=days, state=state)


def deploy_record_status(client, namespace, name):
    """The `current` entry of the deploy record (ConfigMap <name>-deploy-record, key record.json), or present=False.

    post_migrations_pending is true when current.post_migrations is pending or held; a record that cannot be read
    is state invalid with the reason, not an error (the status must still show the rest).
    """
    configmap = '%s-deploy-record' % name
    status, body = client.request('GET', '/api/v1/namespaces/%s/configmaps/%s' % (namespace, configmap))
    if status == 404:
        return dict(configmap=configmap, present=False, state='absent', post_migrations_pending=False)
    if status != 200 or not isinstance(body, dict):
        raise KubeError('ConfigMap %s/%s: HTTP %s: %s' % (namespace, configmap, status, status_message(body)),
                        status=status)
    text = (body.get('data') or {}).get(RECORD_KEY)
    try:
        record = json.loads(text) if text else None
    except ValueError:
        record = None
    current = record.get('current') if isinstance(record, dict) else None
    if not isinstance(current, dict):
        return dict(configmap=configmap, present=True, state='invalid', post_migrations_pending=False,
                    message='key %s is missing or is not a JSON object with a "current" entry' % RECORD_KEY)
    out = dict(configmap=configmap, present=True, state='ok')
    for field in RECORD_FIELDS:
        value = current.get(field)
        out[field] = value if isinstance(value, str) and value else None
    out['post_migrations_pending'] = out['post_migrations'] in POST_MIGRATIONS_TO_RUN
    return out


def migrations_running_hint(record):
    """The line that says a deploy left a migration Job running, and what to do; None when none is."""
    phase = record.get('migrations_running') or (
        'post' if record.get('post_migrations') == POST_MIGRATIONS_RUNNING else None)
    if not phase:
        return None
    return ('%s-deployment migrations still running (a deploy of %s left their Job running at '
            'migrations_wait_timeout; it is never killed): run the deploy again with the same version later, it '
            're-attaches and goes on' % (phase, record.get('version') or '?'))


def post_migrations_hint(record):
    """The line that says post-deployment migrations are still to run, and how to run them; None when they are not."""
    if not record.get('post_migrations_pending'):
        return None
    return ('post-deployment migrations pending (%s): run them with ansible-playbook fediops.mastodon.deploy '
            '-e @<your vars> --tags post-migrations -e migrations_post=run (after a recent backup: '
            'migrations_backup_max_age)' % record['post_migrations'])


def running_version(components, record):
    """The version the instance runs: web's, else the deploy record's, else the first component's."""
    by_name = dict((c['component'], c['version']) for c in components)
    return by_name.get('web') or (record or {}).get('version') or (components[0]['version'] if components else None)


def collect(client, namespace, name, now=None, update_check_url=None, update_check_timeout=10, check=check_updates):
    """Everything the status table shows, as data."""
    selector = '%s=%s' % (INSTANCE_LABEL, name)
    deployments = _items(client, '/apis/apps/v1/namespaces/%s/deployments' % namespace, selector)
    pods = _items(client, '/api/v1/namespaces/%s/pods' % namespace, selector)
    jobs = _items(client, '/apis/batch/v1/namespaces/%s/jobs' % namespace, selector)
    components = [component_status(d, pods, name)
                  for d in sorted(deployments, key=lambda d: _order_key(_component(d, name)))]
    migrations = []
    for phase in MIGRATION_PHASES:
        phase_jobs = [j for j in jobs if _phase(j, name) == phase]
        if phase_jobs:
            last = max(phase_jobs, key=lambda j: ((j.get('metadata') or {}).get('creationTimestamp') or '',
                                                  (j.get('metadata') or {}).get('name') or ''))
            migrations.append(dict(migration_status(last, pods), phase=phase))
    ca = database_ca_status(client, namespace, name, now=now)
    record = deploy_record_status(client, namespace, name)
    version = running_version(components, record)
    updates = dict(available=[], urgent=False, warning=None, checked=False, running_version=version)
    if update_check_url:
        updates.update(check(update_check_url, version, timeout=update_check_timeout), checked=True)
    healthy = (bool(components) and all(c['rollout'] == 'complete' for c in components)
               and all(m['outcome'] == 'succeeded' for m in migrations)
               and ca['state'] in ('ok', 'absent', 'expires soon')
               and record.get('outcome') != 'failed')
    return dict(name=name, namespace=namespace, components=components, migrations=migrations,
                database_ca=ca, deploy_record=record, updates=updates, healthy=healthy)


def _order_key(component):
    order = {'web': 0, 'streaming': 1}
    return (order.get(component, 2), component)


def _table(headers, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return ['  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in [headers] + rows]


def _version_cell(component):
    serving = component.get('serving_versions') or []
    if serving and component['version'] not in serving:
        # The new pods are not ready (yet, or ever): the old version is what users get.
        return '%s (serving %s)' % (component['version'], ', '.join(serving))
    others = [v for v in component['running_versions'] if v != component['version']]
    if not others:
        return component['version']
    return '%s (still running %s)' % (component['version'], ', '.join(others))


def render_table(status):
    """The status as lines of text: components, migrations, the database CA."""
    verdict = 'healthy' if status['healthy'] else 'NEEDS ATTENTION'
    lines = ['Mastodon %s in namespace %s: %s' % (status['name'], status['namespace'], verdict)]
    if status['components']:
        lines += _table(['COMPONENT', 'VERSION', 'READY', 'UP-TO-DATE', 'ROLLOUT'], [
            [c['component'], _version_cell(c), '%d/%d' % (c['ready_replicas'], c['replicas']),
             str(c['updated_replicas']),
             c['rollout'] if c['rollout'] == 'complete' else '%s: %s' % (c['rollout'], c['message'].split(': ', 1)[-1])]
            for c in status['components']])
    else:
        lines.append('no Deployments labelled %s=%s' % (INSTANCE_LABEL, status['name']))
    if status['migrations']:
        lines += _table(['MIGRATION', 'JOB', 'VERSION', 'OUTCOME', 'FINISHED'], [
            [m['phase'], m['job'], m['version'],
             m['outcome'] if m['outcome'] != 'failed' else 'FAILED (%s)' % m['message'],
             '%s (%ss)' % (m['finished'], m['duration_seconds']) if m['finished'] else '-']
            for m in status['migrations']])
    else:
        lines.append('no migration Jobs')
    ca = status['database_ca']
    if not ca['present']:
        lines.append('DATABASE CA  %s: none (no CA Secret; the database is not verified against a private CA)'
                     % ca['secret'])
    elif ca['state'] == 'invalid':
        lines.append('DATABASE CA  %s: INVALID: %s' % (ca['secret'], ca['message']))
    else:
        lines.append('DATABASE CA  %s: %s, expires %s (%d days)%s' % (
            ca['secret'], ca['subject'], ca['not_after'], ca['days_left'],
            '' if ca['state'] == 'ok' else ' ' + ca['state'].upper()))
    lines += _record_lines(status.get('deploy_record'))
    lines += _update_lines(status.get('updates'))
    return lines


def _record_lines(record):
    if not record:
        return []
    if not record['present']:
        return ['DEPLOY       %s: none (no deploy record yet)' % record['configmap']]
    if record['state'] == 'invalid':
        return ['DEPLOY       %s: INVALID: %s' % (record['configmap'], record['message'])]
    lines = ['DEPLOY       %s%s, phase %s, outcome %s, post-deployment migrations %s' % (
        record['version'] or '?', ' (from %s)' % record['previous_version'] if record['previous_version'] else '',
        record['phase'] or '?', (record['outcome'] or '?') if record['outcome'] != 'failed' else 'FAILED',
        record['post_migrations'] or '?')]
    hint = post_migrations_hint(record)
    if hint:
        lines.append('PENDING      ' + hint)
    running = migrations_running_hint(record)
    if running:
        lines.append('RUNNING      ' + running)
    return lines


def _update_lines(updates):
    if not updates or not updates.get('checked'):
        return []
    if updates.get('warning'):
        warning = ['UPDATES      warning: %s' % updates['warning']]
    else:
        warning = []
    if not updates['available']:
        return warning or ['UPDATES      none newer than %s' % updates['running_version']]
    newest = updates['available'][0]
    line = 'UPDATES      %s newer than %s: %s' % (
        'URGENT, a security release is' if updates['urgent'] else 'releases', updates['running_version'],
        ', '.join('%s%s' % (u['version'], ' (urgent)' if u['urgent'] else '') for u in updates['available']))
    if newest.get('release_notes'):
        line += '; release notes of %s: %s' % (newest['version'], newest['release_notes'])
    return [line] + warning
