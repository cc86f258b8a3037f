# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The upgrade with downtime (config_upgrade_with_downtime: true): web, streaming and Sidekiq stopped, every
migration run once, then the rollout of the new version.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md (sections 1 and 3).

Why: Mastodon's zero-downtime path (pre-deployment migrations with SKIP_POST_DEPLOYMENT_MIGRATIONS, the old pods
serving on the migrated schema) is refused below the target's floor (lib/tasks/db.rake:68-72 at 4.7: with the
variable set it aborts on a schema older than 4.3.0's) and is only ever tried one minor at a time. Without the
variable `db:migrate` runs db/migrate and db/post_migrate together from any older schema; nothing of the old version
may run meanwhile, since the post-deployment migrations remove what it reads.

How (playbooks/deploy.yml keeps its steps; each does its part in this mode):

* `stop` (before migrate-pre): unless the Job of the upgrade with downtime has already succeeded (a re-run after
  the rollout changes nothing), the backup gate first (the Job passes the point of no return), then every
  Deployment of the web, streaming and Sidekiq ApplySets scaled to 0, and waited for until none of their pods is
  left (terminating ones included);
* `migrate-pre` applies the Job `<name>-migrate-downtime-<version>` (_migrations.DOWNTIME_SCRIPT: the pre-deployment
  script's schema checks, then `rails db:migrate` without the variable); a Job still running at
  migrations_wait_timeout is left running like any migration (never killed) and the deploy stops there: the
  service stays down until a re-run re-attaches and goes on;
* web, streaming, Sidekiq: their Deployments applied as always (their declared replicas bring them back);
* `gate` and `migrate-post`: nothing to do, every migration ran in the Job; the record says post_migrations done.

Not with `migrations_post: hold` (the Job runs the post-deployment migrations) nor with `web_hpa_enabled` (the
Deployment then declares no replicas: scaled to 0 it would stay there, an HPA does not scale up from 0).
"""

from __future__ import annotations

import time

from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import APPLYSET_PART_OF, applyset_id
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError, status_message
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

VARIABLE = 'config_upgrade_with_downtime'
STOPPED = ('web', 'streaming', 'sidekiq')  # the components whose Deployments are stopped
POLL = 2.0
MERGE_PATCH = 'application/merge-patch+json'


def active(v):
    return bool(v.get(VARIABLE)) and bool(v.get('config_kubernetes', True))


def rules(v):
    """[ConfigError] of the variables that cannot go with an upgrade with downtime (rules.cross_checks)."""
    if not v.get(VARIABLE):
        return []
    errors = []
    if v.get('migrations_post') == 'hold':
        errors.append(ConfigError('migrations_post', 'hold cannot go with %s: true, whose migration Job runs the '
                                  'post-deployment migrations with the others; set migrations_post: run' % VARIABLE))
    if v.get('web_hpa_enabled'):
        errors.append(ConfigError('web_hpa_enabled', 'cannot go with %s: true: web is scaled to 0 for the '
                                  'migrations, and with the HPA its Deployment declares no replicas that would bring '
                                  'it back (an HPA does not scale up from 0); disable the HPA for this upgrade'
                                  % VARIABLE))
    return errors


def downtime_job(manifests):
    """The Job of the upgrade with downtime (the migrate-pre component's Job in this mode)."""
    for obj in manifests.get('migrate-pre') or []:
        if obj['kind'] == 'Job':
            return obj
    return None


def job_succeeded(client, namespace, job):
    """Whether the Job exists and has succeeded (None: it does not exist)."""
    status, body = client.request('GET', client.path('batch/v1', 'Job', namespace, job['metadata']['name']))
    if status == 404:
        return None
    if status != 200:
        raise KubeError('Job %s: HTTP %s: %s' % (job['metadata']['name'], status, status_message(body)), status=status)
    return bool(((body or {}).get('status') or {}).get('succeeded'))


def running_deployments(client, v):
    """The Deployments of the web, streaming and Sidekiq ApplySets in the cluster (a Sidekiq group no longer
    declared included: it still runs until the sidekiq step prunes it)."""
    ns = v['config_namespace']
    ids = [applyset_id('%s-set-%s' % (v['config_name'], component), ns) for component in STOPPED]
    status, body = client.request('GET', '/apis/apps/v1/namespaces/%s/deployments' % ns,
                                  {'labelSelector': '%s in (%s)' % (APPLYSET_PART_OF, ','.join(ids))})
    if status == 404:
        return []
    if status != 200:
        raise KubeError('listing the Deployments: HTTP %s: %s' % (status, status_message(body)), status=status)
    return sorted((body or {}).get('items') or [], key=lambda d: d['metadata']['name'])


def pods_left(client, namespace, deployments):
    """['pod'] of the Deployments' pods still there (terminating ones included)."""
    found = []
    for deployment in deployments:
        labels = (deployment['spec'].get('selector') or {}).get('matchLabels') or {}
        selector = ','.join('%s=%s' % item for item in sorted(labels.items()))
        status, body = client.request('GET', '/api/v1/namespaces/%s/pods' % namespace, {'labelSelector': selector})
        if status != 200:
            raise KubeError('listing the pods of %s: HTTP %s' % (deployment['metadata']['name'], status), status=status)
        found += [pod['metadata']['name'] for pod in (body or {}).get('items') or []]
    return sorted(found)


def stop(client, v, manifests, progress=None, check_mode=False, backup_check=None, timeout=None):
    """The `stop` step's work: {changed, stopped, msg}. Raises KubeError when the pods do not end in time (the Job
    is then not started: nothing of the database changed), PlanError-like [ConfigError] from `backup_check`."""
    ns = v['config_namespace']
    job = downtime_job(manifests)
    if job is None:
        return {'changed': False, 'stopped': [], 'msg': 'no migration Job in this plan: nothing to stop'}
    done = job_succeeded(client, ns, job)
    if done:
        return {'changed': False, 'stopped': [], 'msg': 'the migrations with downtime have run (%s succeeded): '
                'nothing to stop' % job['metadata']['name']}
    if backup_check is not None:
        errors = backup_check()
        if errors:
            return {'errors': errors}
    deployments = running_deployments(client, v)
    to_scale = [d for d in deployments if (d['spec'].get('replicas') or 0) != 0]
    names = [d['metadata']['name'] for d in to_scale]
    if check_mode:
        return {'changed': bool(names), 'stopped': names,
                'msg': 'would scale %s to 0 before the migrations with downtime' % (', '.join(names) or 'nothing')}
    for deployment in to_scale:
        path = '/apis/apps/v1/namespaces/%s/deployments/%s/scale' % (ns, deployment['metadata']['name'])
        status, body = client.request('PATCH', path, {'fieldManager': 'fediops.mastodon-downtime'},
                                      body={'spec': {'replicas': 0}}, content_type=MERGE_PATCH)
        if status != 200:
            raise KubeError('scaling %s to 0: HTTP %s: %s' % (deployment['metadata']['name'], status,
                                                              status_message(body)), status=status)
    limit = timeout if timeout is not None else max(v['web_wait_timeout'], v['streaming_wait_timeout'],
                                                    v['sidekiq_wait_timeout'])
    deadline = time.monotonic() + limit
    shown = None
    while True:
        left = pods_left(client, ns, deployments)
        if not left:
            break
        if time.monotonic() >= deadline:
            raise KubeError('%d pod(s) of web, streaming or Sidekiq still run after %d s (%s): the migrations with '
                            'downtime were not started; run the deploy again'
                            % (len(left), limit, ', '.join(left[:5])))
        if progress is not None and len(left) != shown:
            shown = len(left)
            progress('waiting for %d pod(s) of web, streaming and Sidekiq to end' % shown)
        time.sleep(POLL)
    return {'changed': bool(names), 'stopped': names,
            'msg': 'stopped %s for the migrations with downtime' % (', '.join(names) or 'nothing (already at 0)')}
