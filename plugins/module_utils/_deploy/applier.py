# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dry-run and apply of one component's objects.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

from ansible_collections.fediops.mastodon.plugins.module_utils import _manifests
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import (
    WAIT_STATES, Applier, ApplyError, RunningJobError, key_of)
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError, status_message
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError


# The variable that asks for a kind the cluster may lack (%s: the component), and what to do about it.
UNSERVED_KIND_VARIABLES = {'HTTPRoute': '%s_exposure', 'HorizontalPodAutoscaler': 'web_hpa_enabled',
                           'NetworkPolicy': 'config_network_policy', 'PodDisruptionBudget': '%s_pdb_enabled'}
UNSERVED_HINTS = {'HTTPRoute': ' (the Gateway API CRDs are not installed in this cluster: install them, or use '
                               'ingress exposure)'}


class ComponentApplier(Applier):
    """The Applier of one component: ``plan`` is a server-side dry-run of every object (a rejection mapped to the
    variable that produced the field), ``apply`` then writes only what the dry-run found different."""

    def __init__(self, client, component, namespace, apply_set, origins, new_namespace=False, **kwargs):
        super(ComponentApplier, self).__init__(client, namespace=namespace, apply_set=apply_set, check_mode=True,
                                               **kwargs)
        self.component = component
        self.origins = origins
        self.rejections = {}
        self.planned = {}
        self.objects = []
        if new_namespace:
            self.new_namespaces.add(namespace)

    def _apply_request(self, obj, force=None):
        if self.check_mode and obj['metadata'].get('namespace') in self.new_namespaces:
            # The namespace does not exist yet: the server would answer 404 to a dry-run; the plan's own checks
            # stand for it and the object is reported as to be created.
            return 404, None
        status, body = super(ComponentApplier, self)._apply_request(obj, force)
        if status not in (200, 201) and not (status == 404 and obj['metadata'].get('namespace') in self.new_namespaces):
            with self._lock:
                self.rejections[key_of(obj)] = body
        return status, body

    def rejection_errors(self):
        errors = []
        for key, body in sorted(self.rejections.items()):
            dummy_group, kind, dummy_ns, name = key
            causes = ((body or {}).get('details') or {}).get('causes') or [] if isinstance(body, dict) else []
            if not causes:
                variable = _manifests.origin_of(self.origins, kind, name, 'metadata') or 'config_name'
                errors.append(ConfigError(variable, '%s %s rejected by the API server: %s' % (kind, name, status_message(body))))
            for cause in causes:
                field = cause.get('field') or ''
                variable = _manifests.origin_of(self.origins, kind, name, field) or self.component_variable()
                errors.append(ConfigError(variable, '%s %s: %s: %s (rejected by the API server)' % (
                    kind, name, field or '?', cause.get('message') or cause.get('reason'))))
        return errors

    def component_variable(self):
        return {'config': 'config_env', 'web': 'web_resources', 'streaming': 'streaming_resources',
                'sidekiq': 'sidekiq_workers'}.get(self.component, 'migrations_resources')

    def unserved_kinds(self, objects):
        """[ConfigError] for the kinds of `objects` that the API server does not serve (discovery), naming the
        variable that asked for them: HTTPRoute without the Gateway API CRDs, for example."""
        errors, seen = [], set()
        for obj in objects:
            kind = (obj['apiVersion'], obj['kind'])
            if kind in seen:
                continue
            seen.add(kind)
            try:
                self.client.resource(*kind)
            except KubeError as exc:
                if exc.status != 404:
                    raise
                variable = (UNSERVED_KIND_VARIABLES.get(obj['kind'], '%s').replace('%s', self.component)
                            if obj['kind'] in UNSERVED_KIND_VARIABLES else
                            _manifests.origin_of(self.origins, obj['kind'], obj['metadata']['name'], 'metadata')
                            or self.component_variable())
                hint = UNSERVED_HINTS.get(obj['kind'], '')
                errors.append(ConfigError(variable, '%s %s: %s%s' % (obj['kind'], obj['metadata']['name'], exc.msg, hint)))
        return errors

    def plan(self, objects):
        """Dry-run: {key: action}; PlanError naming the variables on a rejection."""
        unserved = self.unserved_kinds(objects)
        if unserved:
            raise PlanError(unserved, 'the API server does not serve kinds of %s' % self.component)
        try:
            result = self.present(objects)
        except RunningJobError as exc:
            raise PlanError(running_job_errors(self.component, exc), 'a migration is still running')
        except ApplyError as exc:
            errors = self.rejection_errors() or [ConfigError(self.component_variable(), exc.msg)]
            raise PlanError(errors, 'the API server rejects objects of %s (server-side dry-run)' % self.component)
        self.objects = self.prepare(objects)
        self.planned = dict(((r['apiVersion'].split('/')[0] if '/' in r['apiVersion'] else '', r['kind'],
                              r['namespace'] or '', r['name']), r) for r in result['objects'])
        self.plan_result = result
        return result

    def summary(self):
        counts = {}
        for entry in self.plan_result['objects']:
            counts.setdefault(entry['action'], []).append('%s/%s' % (entry['kind'], entry['name']))
        for entry in self.plan_result['pruned']:
            counts.setdefault('deleted (pruned)', []).append('%s/%s' % (entry['kind'], entry['name']))
        return counts

    def settled_objects(self):
        """[{kind, namespace, name, action}] when the dry-run found the component settled: every object unchanged,
        its ApplySet parent too, nothing to prune, and each Deployment rolled out and each Job complete (as the
        dry-run returned them); None otherwise."""
        result = self.plan_result
        if result['changed'] or result['pruned']:
            return None
        for entry in result['objects']:
            if entry['action'] != 'unchanged':
                return None
            if entry['kind'] in WAIT_STATES and WAIT_STATES[entry['kind']](entry.get('object') or {})[0] != 'ok':
                return None
        return [dict((k, entry[k]) for k in ('kind', 'namespace', 'name', 'action')) for entry in result['objects']]

    def restarts(self):
        """The Deployments whose pod template the dry-run changes: the Deployment controller replaces all of their
        pods. A Deployment created anew restarts nothing."""
        out = []
        for entry in self.plan_result['objects']:
            if entry['kind'] != 'Deployment' or entry['action'] == 'unchanged':
                continue
            key = (entry['apiVersion'].split('/')[0] if '/' in entry['apiVersion'] else '', entry['kind'],
                   entry['namespace'] or '', entry['name'])
            before = self.live.get(key)
            after = entry.get('object') or {}
            if before is not None and (before.get('spec') or {}).get('template') != (after.get('spec') or {}).get('template'):
                out.append('%s/%s' % (entry['kind'], entry['name']))
        return out

    def apply(self):
        """Write what the dry-run found different (created, configured, replaced), prune, wait: Applier's
        apply_prepared with the members the dry-run listed and the unchanged objects left out."""
        self.check_mode = False
        self.results, self.diffs, self.pruned, self.done = [], [], [], []
        todo = [o for o in self.objects if (self.planned.get(key_of(o)) or {}).get('action') != 'unchanged']
        # Objects the dry-run found unchanged are not written; their live state is what the dry-run returned.
        settled = [(o, (self.planned.get(key_of(o)) or {}).get('object')) for o in self.objects if o not in todo]
        out = self.apply_prepared(self.objects, todo, settled)
        out['unchanged'] = len(settled)
        return out


def running_job_errors(component, exc):
    """The plan's refusal when a component's ApplySet would prune a running Job: a migration Job of another version
    (the Job's name carries the version), so it names config_mastodon_version."""
    phase = {'migrate-pre': 'pre-deployment', 'migrate-post': 'post-deployment'}.get(component, component)
    errors = []
    for job, activity in zip(exc.jobs, exc.activities):
        version = ((job.get('metadata') or {}).get('labels') or {}).get('app.kubernetes.io/version') or 'another version'
        errors.append(ConfigError('config_mastodon_version', 'a %s migration of %s is still running (%s); deploying '
                                  'another version now would delete its Job and kill it. Wait until it has finished (a '
                                  're-run with config_mastodon_version: %s re-attaches to it and goes on), then deploy '
                                  'the new version' % (phase, version, activity, version)))
    return errors


# What a restart of a component's pods means for its users (streaming/index.js:1427-1443: node exits at once on
# SIGTERM, its WebSockets are dropped, not drained; clients reconnect).
RESTART_NOTES = {'streaming': 'restarts (drops every WebSocket connection)',
                 'web': 'restarts (rolling: new pods ready before old ones stop)',
                 'sidekiq': 'restarts (rolling; old workers finish their jobs in flight)'}


def summary_text(summaries, restarts=None):
    """The per-component summary shown before the per-object diffs in check mode.

    `restarts`: {component: [Deployment/name whose pod template changes]} (ComponentApplier.restarts); when
    given, each workload component says whether its pods restart, streaming in particular."""
    lines = ['Plan of the deploy (per component):']
    for component, counts in summaries:
        if not counts:
            lines.append('  %-12s nothing to do' % component)
        else:
            parts = ['%d %s' % (len(items), action) for action, items in sorted(counts.items())]
            lines.append('  %-12s %s' % (component, ', '.join(parts)))
            for action, items in sorted(counts.items()):
                if action != 'unchanged':
                    lines.append('      %s: %s' % (action, ', '.join(items)))
        if restarts is not None and component in RESTART_NOTES:
            if restarts.get(component):
                lines.append('  %s: %s: %s' % (component, RESTART_NOTES[component], ', '.join(restarts[component])))
            else:
                lines.append('  %s: no restart' % component)
    return '\n'.join(lines) + '\n'
