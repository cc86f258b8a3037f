# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Apply a set of Kubernetes objects in one call (private logic of fediops.mastodon.k8s_apply).

Server-side apply in dependency order (one PATCH per object), server dry-run for check mode, diffs with
Secret data masked, pruning through kubectl's ApplySet labels and annotations (KEP-3659), and waiting for
Deployments, StatefulSets and Jobs with watches.
"""

from __future__ import annotations

import base64
import calendar
import concurrent.futures
import copy
import hashlib
import json
import queue
import threading
import time

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import (
    APPLY_PATCH, KubeError, load_yaml_documents, status_message)

# Dependency order of kinds; kinds not listed go last. Same tier = may be applied concurrently.
KIND_TIERS = (
    ('CustomResourceDefinition', 'Namespace', 'PriorityClass', 'StorageClass'),
    ('ResourceQuota', 'LimitRange', 'ServiceAccount', 'ClusterRole', 'Role'),
    ('ClusterRoleBinding', 'RoleBinding'),
    ('Secret', 'ConfigMap'),
    ('PersistentVolume',),
    ('PersistentVolumeClaim',),
    ('Service',),
    ('Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Pod'),
    ('Job',),
    ('CronJob',),
    ('HorizontalPodAutoscaler',),
    ('PodDisruptionBudget',),
    ('Ingress', 'IngressClass', 'Gateway', 'HTTPRoute', 'NetworkPolicy'),
)
OTHER_TIER = len(KIND_TIERS)
_TIER_OF = dict((kind, n) for n, kinds in enumerate(KIND_TIERS) for kind in kinds)

APPLYSET_ID_LABEL = 'applyset.kubernetes.io/id'
APPLYSET_PART_OF = 'applyset.kubernetes.io/part-of'
APPLYSET_TOOLING = 'applyset.kubernetes.io/tooling'
APPLYSET_GKS = 'applyset.kubernetes.io/contains-group-kinds'
APPLYSET_NAMESPACES = 'applyset.kubernetes.io/additional-namespaces'
# kubectl refuses an ApplySet parent whose tooling name is not "kubectl" ("... is managed by tooling X
# instead of kubectl"), so the parent says kubectl/<version> for kubectl apply --applyset to work on it.
APPLYSET_TOOLING_NAME = 'kubectl'
APPLYSET_TOOLING_VALUE = 'kubectl/v1.34.0'
LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'
MASK = '********'
MASK_CHANGED = '******** (changed)'
MAX_WORKERS = 8
LIST_TIMEOUT = 30


class ApplyError(KubeError):
    """A failure that names the object and what was already done."""


class RunningJobError(ApplyError):
    """An ApplySet would prune Jobs that are still running; ``jobs`` are the live Jobs, ``activities`` says what
    each is doing."""

    def __init__(self, jobs, activities):
        self.jobs = jobs
        self.activities = activities
        super(RunningJobError, self).__init__(
            'not pruning %s: still running, and deleting a Job kills its pod (a migration killed half-way may leave '
            'work that does not re-run cleanly): wait until it has finished, then apply again'
            % '; '.join(activities))


def tier(kind):
    return _TIER_OF.get(kind, OTHER_TIER)


def group_of(api_version):
    return api_version.split('/', 1)[0] if '/' in api_version else ''


def group_kind(api_version, kind):
    """kubectl's <Kind>.<group> notation (just <Kind> for the core group)."""
    group = group_of(api_version)
    return '%s.%s' % (kind, group) if group else kind


def parse_group_kind(text):
    kind, dummy, group = text.partition('.')
    return group, kind


def applyset_id(name, namespace, kind='Secret', group=''):
    """The ApplySet id of a parent: applyset-<base64url(sha256(name.namespace.kind.group))>-v1."""
    digest = hashlib.sha256('.'.join((name, namespace or '', kind, group)).encode('utf-8')).digest()
    return 'applyset-%s-v1' % base64.urlsafe_b64encode(digest).decode('ascii').rstrip('=')


def tooling_base(value):
    parts = (value or '').split('/')
    return '/'.join(parts[:-1]) if len(parts) >= 2 else (value or '')


def ref(obj):
    """kind namespace/name of an object (dict with kind and metadata)."""
    meta = obj.get('metadata') or {}
    if meta.get('namespace'):
        return '%s %s/%s' % (obj.get('kind'), meta['namespace'], meta.get('name'))
    return '%s %s' % (obj.get('kind'), meta.get('name'))


def flatten_definitions(definitions):
    """Objects from a list of dicts and/or multi-document YAML strings (kind List is expanded)."""
    out = []
    for item in definitions or []:
        if isinstance(item, str):
            out.extend(flatten_definitions(load_yaml_documents(item)))
        elif isinstance(item, (list, tuple)):
            out.extend(flatten_definitions(item))
        elif isinstance(item, dict):
            if item.get('kind') == 'List' or (item.get('kind', '').endswith('List') and 'items' in item):
                out.extend(flatten_definitions(item.get('items') or []))
            else:
                out.append(copy.deepcopy(item))
        elif item is not None:
            raise KubeError('definitions: expected objects or YAML strings, got %s' % type(item).__name__)
    for n, obj in enumerate(out):
        meta = obj.get('metadata')
        if not obj.get('apiVersion') or not obj.get('kind') or not isinstance(meta, dict) or not meta.get('name'):
            raise KubeError('definitions: object #%d (%s) needs apiVersion, kind and metadata.name' % (n + 1, ref(obj)))
    return out


def order_objects(objects, reverse=False):
    """Objects grouped by tier: a list of lists, in apply order (or delete order with reverse)."""
    tiers = {}
    for obj in objects:
        tiers.setdefault(tier(obj['kind']), []).append(obj)
    keys = sorted(tiers, reverse=reverse)
    return [tiers[k] for k in keys]


def key_of(obj):
    meta = obj.get('metadata') or {}
    return (group_of(obj['apiVersion']), obj['kind'], meta.get('namespace') or '', meta['name'])


def strip_object(obj):
    """A returned object without managedFields, with Secret data masked."""
    if not isinstance(obj, dict):
        return obj
    out = copy.deepcopy(obj)
    (out.get('metadata') or {}).pop('managedFields', None)
    mask_secret(out)
    return out


def mask_secret(obj, other=None):
    """Mask Secret data/stringData values (in place) and the last-applied annotation. With ``other``
    (the object on the other side of a diff), changed values are marked as such."""
    if not isinstance(obj, dict):
        return obj
    annotations = (obj.get('metadata') or {}).get('annotations') or {}
    if LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = MASK
    if obj.get('kind') != 'Secret':
        return obj
    for field in ('data', 'stringData'):
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        theirs = (other or {}).get(field) if isinstance(other, dict) else None
        for k in values:
            changed = other is not None and (not isinstance(theirs, dict) or theirs.get(k) != values[k])
            values[k] = MASK_CHANGED if changed else MASK
    return obj


def logged_arguments(params):
    """The module's arguments as its result echoes them (``invocation``), with the values of Secrets in
    ``definitions`` masked: AWX keeps that echo in its job events."""
    try:
        definitions = [mask_secret(obj) for obj in flatten_definitions(params.get('definitions'))]
    except KubeError:
        definitions = MASK
    return dict(params, definitions=definitions)


def diff_pair(before, after):
    """(before, after) for a diff: managedFields dropped, Secret values masked (marking changed ones)."""
    b = copy.deepcopy(before) if isinstance(before, dict) else {}
    a = copy.deepcopy(after) if isinstance(after, dict) else {}
    for obj in (b, a):
        (obj.get('metadata') or {}).pop('managedFields', None)
    if b.get('kind') == 'Secret' or a.get('kind') == 'Secret':
        b_orig, a_orig = copy.deepcopy(b), copy.deepcopy(a)
        mask_secret(b, a_orig if a else None)
        mask_secret(a, b_orig if b else None)
    else:
        mask_secret(b)
        mask_secret(a)
    return b, a


def comparable(obj):
    """An object for no-op detection: what the API server compares (managedFields without timestamps)."""
    if not isinstance(obj, dict):
        return obj
    out = copy.deepcopy(obj)
    meta = out.get('metadata') or {}
    meta.pop('resourceVersion', None)
    meta.pop('generation', None)
    managed = []
    for entry in meta.pop('managedFields', None) or []:
        entry = dict(entry)
        entry.pop('time', None)
        managed.append(entry)
    meta['managedFields'] = sorted(managed, key=lambda e: (e.get('manager', ''), e.get('operation', ''), e.get('subresource', '')))
    return out


def project(live, desired):
    """The part of `live` at the paths that `desired` sets (lists element by element when their lengths agree)."""
    if isinstance(desired, dict) and isinstance(live, dict):
        return dict((key, project(live.get(key), value)) for key, value in desired.items())
    if isinstance(desired, list) and isinstance(live, list) and len(desired) == len(live):
        return [project(item, want) for item, want in zip(live, desired)]
    return live


def manager_entry(obj, manager):
    """Our field manager's Apply entry of managedFields (fields and time), or None."""
    for entry in ((obj or {}).get('metadata') or {}).get('managedFields') or []:
        if entry.get('manager') == manager and entry.get('operation') == 'Apply' and not entry.get('subresource'):
            return entry
    return None


def apply_was_noop(desired, before, after, manager):
    """Whether a server-side apply changed nothing. An unchanged resourceVersion proves it; otherwise a controller
    may have written in between (an HPA scaling, a status update), so the apply was a no-op when our manager's
    entry and the values at every path we set are the same before and after. The API server stamps the entry's time
    only when the apply changed the object (k8s.io/apimachinery v0.34.4,
    pkg/util/managedfields/internal/managedfieldsupdater.go:70-76), at one-second resolution, hence the values too."""
    if (before.get('metadata') or {}).get('resourceVersion') == (after.get('metadata') or {}).get('resourceVersion'):
        return True
    ours = manager_entry(before, manager)
    return (ours is not None and ours == manager_entry(after, manager)
            and project(before, desired) == project(after, desired))


def format_status_error(obj, status, body, force_hint=True):
    """A message naming the object and the server's reasons (field causes, conflicting managers)."""
    message = status_message(body)
    causes = ((body or {}).get('details') or {}).get('causes') or [] if isinstance(body, dict) else []
    what = ref(obj)
    if status == 409 and causes:
        lines = []
        for cause in causes:
            field = cause.get('field') or ''
            lines.append('%s (%s)' % (field, cause.get('message') or cause.get('reason')))
        msg = '%s: conflict with another field manager on %d field(s): %s' % (what, len(causes), '; '.join(lines))
        if force_hint:
            msg += '. Set force_conflicts=true to take these fields over.'
        return msg
    if status == 422 and causes:
        fields = ['%s: %s' % (c.get('field') or '?', c.get('message') or c.get('reason')) for c in causes]
        return '%s is invalid (HTTP 422): %s' % (what, '; '.join(fields))
    return '%s: HTTP %s: %s' % (what, status, message)


# ---------------------------------------------------------------- wait conditions

def _conditions(obj):
    return dict((c.get('type'), c) for c in ((obj.get('status') or {}).get('conditions') or []))


def rollout_state(obj):
    """('ok'|'pending'|'failed', message) of a Deployment or StatefulSet."""
    spec = obj.get('spec') or {}
    status = obj.get('status') or {}
    meta = obj.get('metadata') or {}
    want = spec.get('replicas', 1)
    progressing = _conditions(obj).get('Progressing') or {}
    if progressing.get('reason') == 'ProgressDeadlineExceeded':
        return 'failed', '%s: rollout failed: %s' % (ref(obj), progressing.get('message') or 'ProgressDeadlineExceeded')
    if status.get('observedGeneration', 0) < meta.get('generation', 0):
        return 'pending', 'waiting for the controller to observe generation %s' % meta.get('generation')
    counts = dict((k, status.get(k, 0)) for k in ('updatedReplicas', 'readyReplicas', 'availableReplicas'))
    if obj.get('kind') == 'StatefulSet' and 'availableReplicas' not in status:
        counts.pop('availableReplicas')
    if all(v == want for v in counts.values()) and status.get('replicas', want) == want:
        return 'ok', '%s: %d/%d replicas ready' % (ref(obj), want, want)
    return 'pending', '%s: %s of %d replicas' % (
        ref(obj), ', '.join('%s %s' % (v, k) for k, v in sorted(counts.items())), want)


def job_state(obj):
    """('ok'|'pending'|'failed', message) of a Job."""
    conds = _conditions(obj)
    for ctype in ('Failed', 'FailureTarget'):
        cond = conds.get(ctype)
        if cond and cond.get('status') == 'True':
            return 'failed', '%s failed: %s: %s' % (ref(obj), cond.get('reason'), cond.get('message'))
    for ctype in ('Complete', 'SuccessCriteriaMet'):
        cond = conds.get(ctype)
        if cond and cond.get('status') == 'True':
            return 'ok', '%s complete' % ref(obj)
    return 'pending', '%s: running' % ref(obj)


def progress_text(obj):
    """A short state of a waited-for object for progress lines: '1/3 updated, 2/3 ready' or 'running'."""
    if obj.get('kind') == 'Job':
        status = obj.get('status') or {}
        return 'running' if status.get('active') else ('failed' if status.get('failed') else 'pending')
    want = (obj.get('spec') or {}).get('replicas', 1)
    status = obj.get('status') or {}
    if status.get('observedGeneration', 0) < (obj.get('metadata') or {}).get('generation', 0):
        return 'rollout starting'  # the counts are still those of the previous generation
    ready = status.get('readyReplicas', 0)
    surge = ' (+%d surge)' % (ready - want) if ready > want else ''  # old and new pods side by side
    return '%d/%d updated, %d/%d ready%s' % (status.get('updatedReplicas', 0), want, min(ready, want), want, surge)


def elapsed_text(seconds):
    """'45 s' below two minutes, else '12 min'."""
    return '%d s' % seconds if seconds < 120 else '%d min' % (seconds // 60)


WAIT_STATES = {'Deployment': rollout_state, 'StatefulSet': rollout_state, 'Job': job_state}

# Answers after which a wait lists the object again and watches anew (until the wait's deadline): 0 = no
# connection (API server restarting), 410 = resourceVersion expired (watch cache restarted, etcd compacted),
# 429/500/502/503/504 = the server (or a proxy in front of it) is starting, overloaded or going away.
RETRIABLE_WATCH_STATUS = (0, 410, 429, 500, 502, 503, 504)
WATCH_BACKOFF_MAX = 5.0


def watch_backoff(retries):
    """Seconds to wait before the next attempt after ``retries`` failed ones in a row: 0.25, 0.5, 1, ... 5."""
    return min(WATCH_BACKOFF_MAX, 0.25 * 2 ** min(retries, 10))


def _timestamp(text):
    """Seconds since the epoch of an RFC 3339 time as the API server writes it (2026-12-05T17:25:32Z), or None."""
    try:
        return calendar.timegm(time.strptime((text or '').replace('Z', ''), '%Y-%m-%dT%H:%M:%S'))
    except ValueError:
        return None


def job_elapsed(job, now=None):
    """Seconds a Job has been running (since status.startTime, else its creation; until its completionTime once
    complete), or None."""
    meta = (job or {}).get('metadata') or {}
    status = (job or {}).get('status') or {}
    start = _timestamp(status.get('startTime') or meta.get('creationTimestamp'))
    if start is None:
        return None
    end = _timestamp(status.get('completionTime')) if status.get('completionTime') else None
    return max(0, (end or (time.time() if now is None else now)) - start)


def duration_text(seconds):
    """'40 s', '12 min', '2 h 05 min'."""
    seconds = int(seconds or 0)
    if seconds < 90:
        return '%d s' % seconds
    if seconds < 7200:
        return '%d min' % (seconds // 60)
    return '%d h %02d min' % (seconds // 3600, seconds % 3600 // 60)


def job_pods(client, job):
    """The Job's pods (label batch.kubernetes.io/controller-uid, else job-name), oldest first."""
    meta = (job or {}).get('metadata') or {}
    uid = meta.get('uid')
    selector = 'batch.kubernetes.io/controller-uid=%s' % uid if uid else 'job-name=%s' % meta.get('name')
    status, body = client.request('GET', '/api/v1/namespaces/%s/pods' % meta.get('namespace'),
                                  {'labelSelector': selector}, timeout=10)
    if status != 200 or not isinstance(body, dict):
        return []
    return sorted(body.get('items') or [], key=lambda p: (p.get('metadata') or {}).get('creationTimestamp') or '')


def job_log(client, job, tail_lines=None):
    """The log of the Job's newest pod, as text; None when there is no pod yet or its node serves no log (a
    failure to read it never fails a wait)."""
    try:
        pods = job_pods(client, job)
        if not pods:
            return None
        meta = pods[-1]['metadata']
        query = {'tailLines': str(tail_lines)} if tail_lines else {'limitBytes': str(4 * 1024 * 1024)}
        status, log = client.request('GET', '/api/v1/namespaces/%s/pods/%s/log' % (meta['namespace'], meta['name']),
                                     query, timeout=10)
    except KubeError:
        return None
    if status != 200 or log is None:
        return None
    return log if isinstance(log, str) else json.dumps(log)


class _ProgressReporter(object):
    """Calls applier.progress once per change of what a waited object shows (a Job: the migration its log names;
    others: their rollout message), and every HEARTBEAT seconds while nothing changes."""

    def __init__(self, applier, single):
        self.applier = applier
        self.single = single
        self.started = time.monotonic()
        self.shown = {}  # ref -> (key, monotonic time shown)
        self.logs = {}  # ref -> (monotonic time read, description)

    def _say(self, obj, key, text, force=False):
        what = ref(obj)
        now = time.monotonic()
        shown = self.shown.get(what)
        if not force and shown and shown[0] == key and now - shown[1] < self.applier.HEARTBEAT:
            return
        self.shown[what] = (key, now)
        self.applier.progress(text if self.single or obj['kind'] != 'Job' else '%s: %s' % (what, text))

    def tick(self, seen):
        if self.applier.progress is None:
            return
        for obj, current in seen:
            if obj['kind'] != 'Job':
                text = progress_text(current)
                name = obj['metadata']['name']
                self._say(obj, text, '%s %s (%s)' % (name, text, elapsed_text(time.monotonic() - self.started)))
                continue
            what = ref(obj)
            now = time.monotonic()
            read_at, activity = self.logs.get(what, (None, None))
            if read_at is None or now - read_at >= self.applier.LOG_POLL:
                activity = self.applier.describe(current)
                self.logs[what] = (now, activity)
            elapsed = job_elapsed(current)
            text = 'running%s%s' % (' %s' % activity if activity else '',
                                    ' (%s)' % duration_text(elapsed) if elapsed is not None else '')
            self._say(obj, activity or 'running', text)

    def done(self, obj, current):
        if self.applier.progress is None or ref(obj) not in self.shown:
            return
        if obj['kind'] == 'Job':
            elapsed = job_elapsed(current)
            self._say(obj, 'complete', 'complete%s' % (' after %s' % duration_text(elapsed) if elapsed is not None else ''),
                      force=True)
        else:
            self._say(obj, 'ok', '%s %s (%s)' % (obj['metadata']['name'], progress_text(current),
                                                 elapsed_text(time.monotonic() - self.started)), force=True)


class Applier(object):
    """One k8s_apply call."""

    def __init__(self, client, namespace=None, apply_set=None, field_manager='fediops.mastodon',
                 force_conflicts=False, check_mode=False, diff=False, wait=False, wait_timeout=300,
                 replace_failed_jobs=True, progress=None, detach_running_jobs=False, prune_running_jobs=False,
                 describe_job_log=None):
        self.client = client
        # progress(text): called from the caller's thread while waiting, once per change of an object's state
        # (mastodon_deploy prints it, so a long rollout or migration shows where it is).
        self.progress = progress
        self.replace_failed_jobs = replace_failed_jobs
        # progress(text): called once per change of what the wait sees (and every HEARTBEAT seconds without one).
        self.progress = progress
        # A Job still running when wait_timeout is spent: with detach_running_jobs the wait ends without an error
        # and the Job keeps running (listed in the result's `running_jobs`); a later run re-attaches to it.
        self.detach_running_jobs = detach_running_jobs
        # A running Job that is no longer declared is not pruned (that would kill it) unless prune_running_jobs.
        self.prune_running_jobs = prune_running_jobs
        # describe_job_log(text) -> short text or None: what a waited Job's log says it is doing (for migrations,
        # _migrations.describe_progress); without it, no log is read while waiting.
        self.describe_job_log = describe_job_log
        self.running_jobs = []
        self.namespace = namespace
        self.apply_set = apply_set
        self.field_manager = field_manager
        self.force = force_conflicts
        self.check_mode = check_mode
        self.want_diff = diff
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.results = []
        self.diffs = []
        self.pruned = []
        self.done = []
        self.warnings = []
        self._lock = threading.Lock()
        self.parent_ns = namespace or 'default'
        self.set_id = applyset_id(apply_set, self.parent_ns) if apply_set else None
        self.parent = None
        self.live = {}
        self.unlisted = set()  # (group, kind) of set members not listed (Namespace): read one by one
        self.new_namespaces = set()

    # ---------------------------------------------------------------- preparation
    def prepare(self, definitions):
        objects = flatten_definitions(definitions)
        versions = sorted(set(o['apiVersion'] for o in objects))
        self._pool_map(self.client.discover, versions)
        seen = set()
        for obj in objects:
            meta = obj['metadata']
            dummy, namespaced = self.client.resource(obj['apiVersion'], obj['kind'])
            if namespaced:
                meta['namespace'] = meta.get('namespace') or self.namespace or 'default'
            else:
                meta.pop('namespace', None)
            if self.set_id:
                labels = meta.setdefault('labels', None) or {}
                if labels.get(APPLYSET_PART_OF, self.set_id) != self.set_id:
                    raise KubeError('%s already has label %s=%s' % (ref(obj), APPLYSET_PART_OF, labels[APPLYSET_PART_OF]))
                labels[APPLYSET_PART_OF] = self.set_id
                meta['labels'] = labels
            key = key_of(obj)
            if key in seen:
                raise KubeError('definitions: %s is declared twice' % ref(obj))
            seen.add(key)
        return objects

    def _pool_map(self, func, items):
        items = list(items)
        if len(items) <= 1:
            return [func(i) for i in items]
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items))) as pool:
            return list(pool.map(func, items))

    # ---------------------------------------------------------------- apply set
    def _parent_path(self):
        return self.client.path('v1', 'Secret', self.parent_ns, self.apply_set)

    def load_parent(self):
        status, body = self.client.request('GET', self._parent_path())
        if status == 404:
            self.parent = None
            return
        if status != 200:
            raise KubeError('ApplySet parent Secret %s/%s: HTTP %s: %s' % (self.parent_ns, self.apply_set, status, status_message(body)),
                            status=status)
        meta = body.get('metadata') or {}
        annotations = meta.get('annotations') or {}
        labels = meta.get('labels') or {}
        what = 'ApplySet parent Secret %s/%s' % (self.parent_ns, self.apply_set)
        if labels.get(APPLYSET_ID_LABEL) != self.set_id:
            raise KubeError('%s exists but its label %s is %r, not %r' % (what, APPLYSET_ID_LABEL, labels.get(APPLYSET_ID_LABEL), self.set_id))
        if tooling_base(annotations.get(APPLYSET_TOOLING)) != APPLYSET_TOOLING_NAME:
            raise KubeError('%s is managed by tooling %r, not %s' % (what, annotations.get(APPLYSET_TOOLING),
                                                                     APPLYSET_TOOLING_NAME))
        self.parent = body

    def parent_sets(self):
        annotations = ((self.parent or {}).get('metadata') or {}).get('annotations') or {}
        gks = set(x for x in (annotations.get(APPLYSET_GKS) or '').split(',') if x)
        nss = set(x for x in (annotations.get(APPLYSET_NAMESPACES) or '').split(',') if x)
        return gks, nss

    def _gk_version(self, group, kind, hints):
        if (group, kind) in hints:
            return hints[(group, kind)]
        if not group:
            return 'v1'
        status, body = self.client.request('GET', '/apis/' + group)
        if status != 200:
            return None
        return ((body or {}).get('preferredVersion') or {}).get('groupVersion')

    def list_members(self, objects):
        """LIST every kind the set may contain (parent annotation + declared), in the parent's namespace and the
        namespaces the parent records (or that declared objects name): never across the cluster for a
        namespaced kind, so a namespaced Role is enough (docs/rbac/deployer.yml).

        Namespaces are never listed (that would need a ClusterRole) nor pruned: deleting a namespace deletes
        everything in it, the ApplySet parent and the kept secrets included. A declared Namespace is read with
        a GET; one that is no longer declared is left in place, with a warning."""
        cur_gks, cur_nss = self.parent_sets()
        hints = dict(((group_of(o['apiVersion']), o['kind']), o['apiVersion']) for o in objects)
        gks = set(parse_group_kind(x) for x in cur_gks) | set(hints)
        if ('', 'Namespace') in gks:
            gks.discard(('', 'Namespace'))
            self.unlisted.add(('', 'Namespace'))
            if ('', 'Namespace') not in hints and self.parent is not None:
                self.warnings.append('ApplySet %s: no Namespace is declared any more; namespaces it created are left in '
                                     'place (deleting one deletes everything in it): delete them yourself if you mean to'
                                     % self.apply_set)
        namespaces = cur_nss | set(o['metadata']['namespace'] for o in objects if o['metadata'].get('namespace'))
        namespaces.add(self.parent_ns)
        jobs = []
        for group, kind in sorted(gks):
            api_version = self._gk_version(group, kind, hints)
            if not api_version or self.client.discover(api_version) is None or kind not in self.client.discover(api_version):
                self.warnings.append('ApplySet %s: kind %s is no longer served; its members are not pruned'
                                     % (self.apply_set, group_kind(group + '/x' if group else 'v1', kind)))
                continue
            dummy, namespaced = self.client.resource(api_version, kind)
            for ns in (sorted(namespaces) if namespaced else [None]):
                jobs.append((api_version, kind, ns))

        def do_list(job):
            api_version, kind, ns = job
            status, body = self.client.request('GET', self.client.path(api_version, kind, ns),
                                               {'labelSelector': '%s=%s' % (APPLYSET_PART_OF, self.set_id)})
            if status != 200:
                raise KubeError('listing ApplySet members (%s in %s): HTTP %s: %s' % (kind, ns or 'cluster', status, status_message(body)),
                                status=status)
            items = []
            for item in body.get('items') or []:
                item['apiVersion'] = api_version
                item['kind'] = kind
                items.append(item)
            return items

        for items in self._pool_map(do_list, jobs):
            for item in items:
                self.live[key_of(item)] = item

    def desired_parent(self, objects, union):
        gks = set(group_kind(o['apiVersion'], o['kind']) for o in objects)
        nss = set(o['metadata']['namespace'] for o in objects if o['metadata'].get('namespace'))
        if union:
            cur_gks, cur_nss = self.parent_sets()
            gks |= cur_gks
            nss |= cur_nss
        nss.discard(self.parent_ns)
        return {
            'apiVersion': 'v1', 'kind': 'Secret',
            'metadata': {
                'name': self.apply_set, 'namespace': self.parent_ns,
                'labels': {APPLYSET_ID_LABEL: self.set_id},
                'annotations': {APPLYSET_TOOLING: APPLYSET_TOOLING_VALUE,
                                APPLYSET_GKS: ','.join(sorted(gks)),
                                APPLYSET_NAMESPACES: ','.join(sorted(nss))},
            },
        }

    def write_parent(self, objects, union):
        """Apply the parent Secret when its labels/annotations differ from the live ones; True if changed."""
        want = self.desired_parent(objects, union)
        if self.parent is not None:
            meta = self.parent.get('metadata') or {}
            live_ann = meta.get('annotations') or {}
            if all(live_ann.get(k) == v for k, v in want['metadata']['annotations'].items()) and \
                    (meta.get('labels') or {}).get(APPLYSET_ID_LABEL) == self.set_id:
                return False
        if self.check_mode:
            return True
        status, body = self._apply_request(want, force=True)
        if status not in (200, 201):
            raise ApplyError(format_status_error(want, status, body), status=status, applied_objects=self.done_refs())
        self.parent = body
        return True

    # ---------------------------------------------------------------- requests
    def _apply_request(self, obj, force=None):
        meta = obj['metadata']
        query = {'fieldManager': self.field_manager, 'force': 'true' if (self.force if force is None else force) else 'false'}
        if self.check_mode:
            query['dryRun'] = 'All'
        path = self.client.path(obj['apiVersion'], obj['kind'], meta.get('namespace'), meta['name'])
        return self.client.request('PATCH', path, query, body=obj, content_type=APPLY_PATCH)

    def done_refs(self):
        with self._lock:
            return list(self.done)

    def _record(self, obj, action, returned, before=None, after=None):
        meta = obj.get('metadata') or {}
        entry = {'kind': obj['kind'], 'apiVersion': obj['apiVersion'], 'namespace': meta.get('namespace'),
                 'name': meta.get('name'), 'action': action}
        if returned is not None:
            entry['object'] = strip_object(returned)
        with self._lock:
            self.results.append(entry)
            if action != 'unchanged':
                self.done.append('%s (%s)' % (ref(obj), action))
            if self.want_diff and action != 'unchanged':
                b, a = diff_pair(before, after)
                self.diffs.append({'before_header': ref(obj), 'after_header': ref(obj), 'before': b, 'after': a})
        return entry

    def _get(self, obj):
        meta = obj['metadata']
        status, body = self.client.request('GET', self.client.path(obj['apiVersion'], obj['kind'], meta.get('namespace'),
                                                                   meta['name']))
        if status == 404:
            return None
        if status != 200:
            raise ApplyError(format_status_error(obj, status, body), status=status)
        return body

    def replace_job(self, obj, before):
        """Delete a failed Job (Background propagation: its pods too) and wait until it is gone, so that the
        apply that follows creates it anew. Job specs are immutable, so a re-run could not retry it otherwise."""
        meta = obj['metadata']
        path = self.client.path(obj['apiVersion'], obj['kind'], meta.get('namespace'), meta['name'])
        uid = (before.get('metadata') or {}).get('uid')
        query = {'propagationPolicy': 'Background'}
        if self.check_mode:
            query['dryRun'] = 'All'
        # With a body the API server reads the options from it only (the query is then ignored): dryRun goes there too.
        body = {'apiVersion': 'v1', 'kind': 'DeleteOptions', 'propagationPolicy': 'Background'}
        if self.check_mode:
            body['dryRun'] = ['All']
        if uid:
            body['preconditions'] = {'uid': uid}
        status, answer = self.client.request('DELETE', path, query, body=body)
        if status == 409 or status == 404:
            return  # already gone or replaced by someone else: the apply below decides
        if status not in (200, 202):
            raise ApplyError('%s failed and cannot be replaced: %s' % (ref(obj), format_status_error(obj, status, answer)),
                             status=status)
        if self.check_mode:
            return
        deadline = time.monotonic() + max(10, min(60, self.wait_timeout))
        while True:
            current = self._get(obj)
            if current is None or (current.get('metadata') or {}).get('uid') != uid:
                return
            if time.monotonic() > deadline:
                raise ApplyError('%s failed and was deleted for a retry, but it is still there (finalizers: %s)'
                                 % (ref(obj), ', '.join((current.get('metadata') or {}).get('finalizers') or []) or 'none'))
            time.sleep(0.2)

    def apply_one(self, obj):
        key = key_of(obj)
        if self.set_id:
            before = self.live.get(key)
            if before is None and (self.want_diff or self.check_mode or obj['kind'] == 'Job'
                                   or key[:2] in self.unlisted):
                before = self._get(obj)
        else:
            before = self._get(obj)
        if (self.replace_failed_jobs and obj['kind'] == 'Job' and isinstance(before, dict)
                and (_conditions(before).get('Failed') or {}).get('status') == 'True'):
            self.replace_job(obj, before)
            if self.check_mode:
                # A dry-run apply onto the failed Job would answer for the old object; report the replacement.
                return self._record(obj, 'replaced', obj, before, obj), obj
            status, body = self._apply_request(obj)
            if status not in (200, 201):
                raise ApplyError(format_status_error(obj, status, body, force_hint=not self.force), status=status)
            return self._record(obj, 'replaced', body, before, body), body
        status, body = self._apply_request(obj)
        if status == 404 and self.check_mode and obj['metadata'].get('namespace') in self.new_namespaces:
            # Dry-run cannot place an object in a namespace that this (simulated) run only creates.
            status, body = 201, obj
        if status not in (200, 201):
            raise ApplyError(format_status_error(obj, status, body, force_hint=not self.force), status=status)
        if status == 201 or before is None:
            action = 'created'
        elif self.check_mode:
            action = 'unchanged' if comparable(before) == comparable(body) else 'configured'
        else:
            action = 'unchanged' if apply_was_noop(obj, before, body, self.field_manager) else 'configured'
        if obj['kind'] == 'Namespace' and action == 'created' and self.check_mode:
            with self._lock:
                self.new_namespaces.add(obj['metadata']['name'])
        return self._record(obj, action, body, before, body), body

    def delete_one(self, obj):
        meta = obj['metadata']
        query = {'propagationPolicy': 'Background'}
        if self.check_mode:
            query['dryRun'] = 'All'
        before = obj if obj.get('status') is not None or obj['metadata'].get('uid') else None
        if before is None and self.want_diff:
            before = self._get(obj)
        path = self.client.path(obj['apiVersion'], obj['kind'], meta.get('namespace'), meta['name'])
        status, body = self.client.request('DELETE', path, query)
        if status == 404:
            return None
        if status not in (200, 202):
            raise ApplyError(format_status_error(obj, status, body), status=status)
        return self._record(obj, 'deleted', None, before, None)

    def run_tiers(self, tiers, func):
        """Run func over each tier concurrently; stop after a failing tier. Returns [(obj, func result)]."""
        out = []
        for group in tiers:
            errors = []
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(group))) as pool:
                futures = [(obj, pool.submit(func, obj)) for obj in group]
                for obj, fut in futures:
                    try:
                        out.append((obj, fut.result()))
                    except KubeError as exc:
                        errors.append(exc)
            if errors:
                first = errors[0]
                msg = '; '.join(e.msg for e in errors)
                if first.status == 0:
                    msg = errors[0].msg
                done = self.done_refs()
                what = 'simulated (check mode)' if self.check_mode else 'done'
                msg += '. Already %s: %s' % (what, ', '.join(done) if done else 'nothing')
                raise ApplyError(msg, status=first.status, applied_objects=done)
        return out

    # ---------------------------------------------------------------- the call
    def present(self, definitions):
        objects = self.prepare(definitions)
        if self.set_id:
            self.load_parent()
            self.list_members(objects)
        return self.apply_prepared(objects, objects)

    def apply_prepared(self, objects, todo, settled=()):
        """Apply ``todo`` (prepared objects of the set ``objects``; the members already listed), prune what the
        set no longer declares, wait. ``settled``: (object, live body) known unchanged, not written but waited
        for (mastodon_deploy's steps, after their dry-run). A running Job is never pruned (check_prunable, before
        anything is written)."""
        parent_changed = False
        if self.set_id:
            declared = set(key_of(o) for o in objects)
            self.check_prunable([item for key, item in self.live.items() if key not in declared])
        applied = []
        for group in order_objects(todo):
            if self.set_id and not parent_changed and any(o['metadata'].get('namespace') for o in group):
                parent_changed = self.write_parent(objects, union=True) or parent_changed
            applied.extend(self.run_tiers([group], self.apply_one))
        if self.set_id:
            declared = set(key_of(o) for o in objects)
            strays = [item for key, item in self.live.items() if key not in declared]
            for obj, entry in self.run_tiers(order_objects(strays, reverse=True), self.delete_one):
                if entry:
                    self.pruned.append(dict((k, entry[k]) for k in ('kind', 'apiVersion', 'namespace', 'name')))
            if not self.check_mode:
                parent_changed = self.write_parent(objects, union=False) or parent_changed
            elif self.parent is None:
                parent_changed = True
        if self.wait and not self.check_mode:
            self.wait_for([(obj, entry_body[1]) for obj, entry_body in applied] + list(settled))
        changed = parent_changed or any(r['action'] != 'unchanged' for r in self.results)
        return self.result(changed)

    def absent(self, definitions):
        objects = self.prepare(definitions)
        if self.set_id:
            self.load_parent()
            if self.parent is not None:
                self.list_members(objects)
        todo = dict((key_of(o), o) for o in objects)
        for key, item in self.live.items():
            todo[key] = item
        for obj, entry in self.run_tiers(order_objects(list(todo.values()), reverse=True), self.delete_one):
            if entry and key_of(obj) not in set(key_of(o) for o in objects):
                self.pruned.append(dict((k, entry[k]) for k in ('kind', 'apiVersion', 'namespace', 'name')))
        changed = any(r['action'] == 'deleted' for r in self.results)
        if self.set_id and self.parent is not None:
            query = {'dryRun': 'All'} if self.check_mode else None
            status, body = self.client.request('DELETE', self._parent_path(), query)
            if status not in (200, 202, 404):
                raise ApplyError('ApplySet parent Secret %s/%s: HTTP %s: %s' % (self.parent_ns, self.apply_set, status, status_message(body)),
                                 status=status)
            changed = True
        return self.result(changed)

    def check_prunable(self, strays):
        """Refuse (before anything is written) to prune a Job that is still running: deleting it kills its pod,
        and a migration killed half-way may leave work that does not re-run cleanly."""
        if self.prune_running_jobs:
            return
        running = [item for item in strays if item.get('kind') == 'Job' and isinstance(item.get('status'), dict)
                   and job_state(item)[0] == 'pending']
        if running:
            raise RunningJobError(running, ['%s: %s' % (ref(job), self.job_activity(job)) for job in running])

    def result(self, changed):
        out = dict(changed=changed, objects=self.results, pruned=self.pruned,
                   applied=sum(1 for r in self.results if r['action'] != 'deleted'))
        if self.running_jobs:
            out['running_jobs'] = list(self.running_jobs)
        if self.set_id:
            out['apply_set'] = {'name': self.apply_set, 'namespace': self.parent_ns, 'id': self.set_id}
        if self.want_diff:
            out['diff'] = self.diffs
        return out

    # ---------------------------------------------------------------- wait
    # Seconds between two looks at the progress of what is waited for, between two reads of a waited Job's log,
    # and the longest silence of progress() while nothing changes (so a long migration is seen to be alive).
    PROGRESS_TICK = 2.0
    LOG_POLL = 15.0
    HEARTBEAT = 300.0

    def wait_for(self, applied):
        """Wait for Deployments, StatefulSets and Jobs concurrently; fail at once on a failure. With
        detach_running_jobs, Jobs still running at the deadline are left running (self.running_jobs)."""
        todo = [(obj, body) for obj, body in applied if obj['kind'] in WAIT_STATES and isinstance(body, dict)]
        if not todo:
            return
        deadline = time.monotonic() + self.wait_timeout
        results = queue.Queue()
        pending = {}
        self._seen = {}
        for obj, body in todo:
            state, msg = WAIT_STATES[obj['kind']](body)
            if state == 'ok':
                continue
            if state == 'failed':
                raise ApplyError(self._failure_message(obj, body, msg), applied_objects=self.done_refs())
            pending[ref(obj)] = obj
            self._seen[ref(obj)] = (obj, body)
            if self.progress is not None:
                results.put((obj, 'progress', msg, body))
            thread = threading.Thread(target=self._wait_thread, args=(obj, body, deadline, results))
            thread.daemon = True  # a failure elsewhere must not wait for this watch to end
            thread.start()
        reporter = _ProgressReporter(self, single=len(pending) == 1)
        last = {}
        while pending:
            try:
                timeout = max(0.1, min(self.PROGRESS_TICK, deadline - time.monotonic() + 2))
                obj, state, msg, current = results.get(timeout=timeout)
            except queue.Empty:
                if time.monotonic() > deadline + 2:
                    break
                reporter.tick([self._seen[key] for key in pending])
                continue
            if state == 'progress':  # from a wait thread: shown here, in the caller's thread
                if ref(obj) in pending:
                    self._seen[ref(obj)] = (obj, current)
                    reporter.tick([(obj, current)])
                continue
            pending.pop(ref(obj), None)
            if state == 'failed':
                raise ApplyError(self._failure_message(obj, current, msg), applied_objects=self.done_refs())
            if state != 'ok':
                last[ref(obj)] = (obj, msg, current)
            else:
                reporter.done(obj, current)
        if not pending and last and self.detach_running_jobs and all(o['kind'] == 'Job' for o, m, c in last.values()):
            for obj, msg, current in last.values():
                self.running_jobs.append(self._running_job(obj, current))
            return
        if pending or last:
            waiting = '; '.join(m for o, m, c in last.values()) or '%d object(s)' % len(pending)
            raise ApplyError('timed out after %ss waiting for: %s' % (self.wait_timeout, waiting), applied_objects=self.done_refs())

    def _running_job(self, obj, current):
        """What the result says of a Job left running: its name, how long it has run, what it is doing."""
        meta = obj['metadata']
        elapsed = job_elapsed(current)
        activity = self.describe(current)
        out = {'kind': 'Job', 'namespace': meta.get('namespace'), 'name': meta['name'],
               'elapsed_seconds': int(elapsed) if elapsed is not None else None, 'activity': activity,
               'msg': '%s is still running%s%s; it was left running (a later run re-attaches to it)' % (
                   ref(obj), ' for %s' % duration_text(elapsed) if elapsed is not None else '',
                   ', now at %s' % activity if activity else '')}
        return out

    def job_activity(self, job):
        """'running for 12 min, now at migration X' of a live Job (what its log says, when the node serves it)."""
        elapsed = job_elapsed(job)
        activity = self.describe(job)
        return 'running%s%s' % (' for %s' % duration_text(elapsed) if elapsed is not None else '',
                                ', now at %s' % activity if activity else '')

    def describe(self, job):
        """What the Job's log says it is doing (through describe_job_log), or None."""
        if self.describe_job_log is None:
            return None
        return self.describe_job_log(self.job_log(job, tail_lines=200))

    def job_log(self, job, tail_lines=None):
        """The log of the Job's newest pod (text), or None when there is no pod or its node serves no log."""
        return job_log(self.client, job, tail_lines)

    def _wait_thread(self, obj, body, deadline, results):
        """Watch one object until its state is no longer pending, the deadline passes or an error is final.

        A watch does not survive everything: the API server forgets old resourceVersions (after a restart its
        watch cache starts at the current revision, and etcd compaction drops history), answering HTTP 410
        (``Expired: too old resource version``, also as an ERROR event in the stream), and a restarting API
        server drops the connection or refuses new ones for a while. Those are retried until the deadline:
        LIST the object (a fresh state and a resourceVersion the server knows), then watch again from there,
        with a short backoff. Anything else (403, 404, ...) ends the wait at once."""
        check = WAIT_STATES[obj['kind']]
        state, msg, current = 'pending', check(body)[1], body
        rv = (body.get('metadata') or {}).get('resourceVersion')
        retries = 0
        try:
            while state == 'pending' and time.monotonic() < deadline:
                try:
                    if rv is None:
                        current, rv = self._relist(obj, deadline - time.monotonic())
                        if current is None:
                            state, msg = 'failed', '%s was deleted while waiting' % ref(obj)
                            break
                        state, msg = check(current)
                        if state != 'pending':
                            break
                    for event in self._watch_object(obj, rv, deadline - time.monotonic()):
                        current = event.get('raw_object') or event.get('object') or {}
                        if event.get('type') == 'DELETED':
                            state, msg = 'failed', '%s was deleted while waiting' % ref(obj)
                            break
                        rv = (current.get('metadata') or {}).get('resourceVersion') or rv
                        retries = 0
                        state, msg = check(current)
                        getattr(self, '_seen', {})[ref(obj)] = (obj, current)
                        if state == 'pending' and self.progress is not None:
                            results.put((obj, 'progress', msg, current))
                        if state != 'pending':
                            break
                except KubeError as exc:
                    if exc.status not in RETRIABLE_WATCH_STATUS:
                        raise
                    # Re-list: the resourceVersion may be gone (410), or events were missed while disconnected.
                    rv = None
                    msg = '%s; retrying after: %s' % (check(current)[1], exc.msg)
                    time.sleep(max(0, min(watch_backoff(retries), deadline - time.monotonic())))
                    retries += 1
        except KubeError as exc:
            state, msg = 'failed', '%s: %s' % (ref(obj), exc.msg)
        except Exception as exc:  # pylint: disable=broad-except
            state, msg = 'failed', '%s: waiting failed: %s' % (ref(obj), exc)
        results.put((obj, state, msg, current))

    def _relist(self, obj, remaining):
        """(the object or None, the collection's resourceVersion) from a LIST filtered to the object's name:
        the list's resourceVersion is one the server can watch from, even when the object itself has not
        changed since before a compaction."""
        meta = obj['metadata']
        path = self.client.path(obj['apiVersion'], obj['kind'], meta.get('namespace'))
        status, body = self.client.request('GET', path, {'fieldSelector': 'metadata.name=%s' % meta['name']},
                                           timeout=max(1, min(LIST_TIMEOUT, remaining)))
        if status != 200 or not isinstance(body, dict):
            raise KubeError('listing %s: HTTP %s: %s' % (ref(obj), status, status_message(body)), status=status)
        items = body.get('items') or []
        return (items[0] if items else None), (body.get('metadata') or {}).get('resourceVersion')

    def _watch_object(self, obj, rv, remaining):
        """Watch events of one object from resourceVersion ``rv``; an ERROR event raises KubeError with its code."""
        meta = obj['metadata']
        path = self.client.path(obj['apiVersion'], obj['kind'], meta.get('namespace'))
        for event in self.client.watch(path, {'fieldSelector': 'metadata.name=%s' % meta['name'],
                                              'resourceVersion': rv}, timeout=max(1, remaining)):
            if event.get('type') == 'ERROR':
                status = event.get('raw_object') or event.get('object') or {}
                raise KubeError('watch of %s: %s' % (ref(obj), status_message(status)),
                                status=status.get('code') if isinstance(status, dict) else 0)
            yield event

    def _failure_message(self, obj, current, msg):
        if obj['kind'] != 'Job':
            return msg
        return msg + self._job_pod_details(obj, current)

    def _job_pod_details(self, obj, job):
        """Reason/message of the Job's failed pod and the last lines of its log when the node serves them."""
        meta = obj['metadata']
        uid = ((job or {}).get('metadata') or {}).get('uid')
        selector = 'batch.kubernetes.io/controller-uid=%s' % uid if uid else 'job-name=%s' % meta['name']
        try:
            status, body = self.client.request('GET', '/api/v1/namespaces/%s/pods' % meta['namespace'],
                                               {'labelSelector': selector}, timeout=5)
        except KubeError:
            return ''
        if status != 200:
            return ''
        pods = [p for p in (body or {}).get('items') or [] if (p.get('status') or {}).get('phase') == 'Failed']
        if not pods:
            return ''
        pod = sorted(pods, key=lambda p: (p.get('metadata') or {}).get('creationTimestamp') or '')[-1]
        pod_name = pod['metadata']['name']
        parts = []
        for cs in (pod.get('status') or {}).get('containerStatuses') or []:
            term = (cs.get('state') or {}).get('terminated') or (cs.get('lastState') or {}).get('terminated') or {}
            if term:
                parts.append('container %s: %s (exit code %s): %s' % (cs.get('name'), term.get('reason'),
                                                                      term.get('exitCode'), term.get('message') or ''))
        out = '. Pod %s' % pod_name
        if (pod.get('status') or {}).get('reason') or (pod.get('status') or {}).get('message'):
            out += ' %s: %s' % (pod['status'].get('reason') or '', pod['status'].get('message') or '')
        if parts:
            out += ': ' + '; '.join(parts)
        try:
            status, log = self.client.request('GET', '/api/v1/namespaces/%s/pods/%s/log' % (meta['namespace'], pod_name),
                                              {'tailLines': '20'}, timeout=(1, 2))
            if status == 200 and isinstance(log, str) and log.strip():
                out += '. Last log lines:\n' + log.rstrip()
            elif status == 200:
                out += '. (its log is empty)'
            else:
                out += '. (log not available: %s)' % (status_message(log)[:200] if log else 'HTTP %s' % status)
        except KubeError as exc:
            out += '. (log not available: %s)' % exc.msg[:200]
        return out
