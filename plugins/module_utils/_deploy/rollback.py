# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Rolling web, streaming and Sidekiq back to the version the deploy record names as the previous one, while that
is still possible (playbooks/rollback.yml, mastodon_deploy step=rollback).

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md (sections 2 and 3).

When a rollback is possible, and why (the one place that says it; guards_upgrade.py holds the rules it shares):

* Until the post-deployment migrations of the version being left have run, the database still holds what the
  previous version reads: the pre-deployment migrations only add (../shared/reference/mastodon/README.md,
  "Migrations"). Going back is then a rollback of the images. Once they have run (`post_migrations` done, or a
  post Job left running), only a restore of the backup taken before the upgrade goes back: the rollback refuses
  and says how (the upgrade guide, "Before the point of no return: backups"). The upgrade guard lets a patch
  downgrade through with a warning even then (the newer patch's migrations stay, which is usually harmless); a
  rollback is a promise that nothing of the abandoned version stays, so it refuses.
* Below 4.7 once any 4.7 pod has run (`lines_run` of any entry): accounts created under 4.7 have their signing
  key only in the encrypted keypairs table (app/models/account.rb:536,559-564 at 4.7), which 4.6 cannot read.
  That rule, and every other rule of the upgrade path, is the upgrade guard's (guards_upgrade.upgrade_check): the
  rollback plans with config_mastodon_version set to the previous version, so the plan runs the guard like for
  any deploy, and the guard allows exactly the rollbacks this module asks for (a patch or minor downgrade whose
  newer version's post-deployment migrations have not run, no 4.7 pod before a return below 4.7).
* The environment is validated for the previous version by the same plan: a key the new version accepts and the
  previous one refuses refuses the rollback, naming the key.

What is applied: config (the env ConfigMaps/Secrets the previous version's pods read, so their checksum annotation
tells the truth; unchanged when the environment is the same), web, streaming, Sidekiq. No migration Job: the
migration components are left as they are (their ApplySets are not touched, so nothing of them is pruned).

The record: the abandoned version's entry goes into the history (kept: its `lines_run` still bind the guard),
and the current entry is the previous version again with `outcome: rolled-back` and `rolled_back_from`. A re-run
targets that current version again: nothing differs, nothing is written.
"""

from __future__ import annotations

import copy

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import record as _record
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards_upgrade import (
    VERSION_VARIABLE, parse_release, upgrade_check)
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.variables import check_variables
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

# What a rollback applies, in this order (plan.COMPONENTS names).
COMPONENTS = ('config', 'web', 'streaming', 'sidekiq')
ROLLED_BACK = 'rolled-back'
RESTORE_GUIDE = ('the upgrade guide (docs/docsite/rst/guide_upgrade.rst), "Before the point of no return: '
                 'backups": create a new database cluster from the backup taken before the upgrade, point '
                 'config_do_database_cluster (or config_db_host) at it, delete the ConfigMap %s and deploy the '
                 'previous version')


def restore_runbook(record_name):
    return RESTORE_GUIDE % record_name


def is_rollback_entry(entry):
    return bool((entry or {}).get('rolled_back_from'))


def rollback_target(record, record_name='<config_name>-deploy-record'):
    """(target version or None, [ConfigError], already) of a rollback over `record`.

    `already`: the current entry is a rollback (done, or interrupted): the target is its own version again, so a
    re-run re-applies it (and changes nothing when it is in place). The errors are the rollback's own
    preconditions; the upgrade guard's rules for the target are checked too (`upgrade_check`), so that a refusal
    is known before anything is planned."""
    current = (record or {}).get('current') if isinstance(record, dict) else None
    if not current:
        return None, [ConfigError(VERSION_VARIABLE, 'there is no deploy record (ConfigMap %s): nothing says which '
                                  'version ran before, so there is nothing to roll back to' % record_name)], False
    if is_rollback_entry(current):
        return current.get('version'), [], True
    errors = []
    version = current.get('version') or '?'
    if current.get('post_migrations') in ('done', 'running'):
        errors.append(ConfigError(VERSION_VARIABLE, 'cannot roll %s back: its post-deployment migrations have %s, '
                                  'and they removed what the previous version reads; there is no override: only a '
                                  'restore goes back, see %s' % (
                                      version, 'run' if current['post_migrations'] == 'done' else 'started',
                                      restore_runbook(record_name))))
    elif current.get('migrations_running'):
        errors.append(ConfigError(VERSION_VARIABLE, 'a %s-deployment migration Job of %s is still running: it is '
                                  'never stopped; run the deploy again to wait for it, then decide'
                                  % (current['migrations_running'], version)))
    target = current.get('previous_version')
    if not target:
        errors.append(ConfigError(VERSION_VARIABLE, 'the deploy record names no version before %s (a first '
                                  'install): there is nothing to roll back to' % version))
        return None, errors, False
    if errors:
        return target, errors, False
    guard_errors, dummy = upgrade_check(target, record, False, record_name)
    return target, [ConfigError(VERSION_VARIABLE, 'cannot roll back to %s: %s' % (target, e.reason))
                    for e in guard_errors], False


def previous_entry(record, version):
    """The newest history entry of `version` (what ran before the abandoned one), or None."""
    for entry in (record or {}).get('history') or []:
        if isinstance(entry, dict) and entry.get('version') == version:
            return entry
    return None


def streaming_digest(record, version):
    """The digest the previous version's streaming image was pinned to (its record entry), or ''."""
    image = ((previous_entry(record, version) or {}).get('images') or {}).get('streaming') or ''
    return image.split('@', 1)[1] if '@sha256:' in image else ''


def rolled_back_record(record, target, images, now, outcome=ROLLED_BACK):
    """A new record whose current entry is `target` serving again after a rollback (outcome `rolled-back`, or
    `running` while it is applied, `failed` when it did not complete); the abandoned entry goes into the history.
    On an entry that is a rollback already, only its outcome and time change."""
    record = copy.deepcopy(record)
    current = record['current']
    stamp = _record._stamp(now)
    if is_rollback_entry(current):
        current.update(outcome=outcome, updated_at=stamp)
        return record
    before = previous_entry(record, target) or {}
    entry = {'version': target, 'images': dict(images or {}), 'phase': 'rollout',
             # the previous version's own post-deployment state (it ran before the abandoned upgrade)
             'post_migrations': before.get('post_migrations') or 'pending',
             'previous_version': current.get('version'), 'rolled_back_from': current.get('version'),
             # the schema stays as the abandoned version's pre-deployment migrations left it
             'schema_version': current.get('schema_version') or before.get('schema_version'),
             'started_at': stamp, 'updated_at': stamp, 'lines_run': list(before.get('lines_run') or []),
             'outcome': outcome}
    line = parse_release(target)
    if line:
        entry['lines_run'] = sorted(set(entry['lines_run']) | set(['%d.%d' % line[:2]]),
                                    key=lambda t: [int(p) for p in t.split('.')])
    record['history'] = ([current] + list(record.get('history') or []))[:_record.HISTORY_LIMIT]
    record['current'] = entry
    return record


def refused(errors, target=None):
    what = 'the rollback to %s is refused' % target if target else 'the rollback is refused'
    return PlanError(errors, what)  # PlanError.message says that nothing was changed


def plan_rollback(raw, specs, make_deploy, kube_client):
    """(deploy, record, target, already): the plan of the previous version (every check of a deploy runs, the
    upgrade guard included) with the components of a rollback dry-run; PlanError when it is refused."""
    v, errors = check_variables(raw, specs)
    if errors:
        raise refused(errors)
    if not v['config_kubernetes']:
        raise refused([ConfigError('config_kubernetes', 'is false: there is nothing in a cluster to roll back')])
    name_of_record = _record.record_name(v['config_name'])
    record = _record.read_record(kube_client(), v['config_namespace'], v['config_name'])
    target, errors, already = rollback_target(record, name_of_record)
    if errors:
        raise refused(errors, target)
    rolled = dict(raw, config_mastodon_version=target, config_streaming_image_digest=streaming_digest(record, target))
    deploy = make_deploy(rolled, list(COMPONENTS))
    try:
        deploy.plan()
    except PlanError as exc:
        raise refused(exc.errors, target)
    return deploy, record, target, already


def apply_rollback(deploy, record, target, already, now):
    """Apply the planned rollback and record it; returns the result. Nothing is written when the rollback is in
    place already (a re-run)."""
    v = deploy.v
    client = deploy.kube_client()
    changed = any(a.plan_result['changed'] for a in deploy.appliers)
    current = record['current']
    out_components = {}
    if already and not changed and current.get('outcome') == ROLLED_BACK:
        result = deploy.result(False, dict((a.component, deploy.brief(a.plan_result)) for a in deploy.appliers), None)
        result['msg'] = '%s serves already (rolled back from %s): nothing to do' % (target, current.get('rolled_back_from'))
        return result
    images = {'web': deploy.model['image'], 'streaming': deploy.model['streaming_image']}

    def write(rec):
        _record.write_record(client, v['config_namespace'], v['config_name'], deploy.model['labels'], rec)
        return rec

    written = write(rolled_back_record(record, target, images, now(), 'running'))
    for applier in deploy.appliers:
        try:
            out_components[applier.component] = deploy.brief(applier.apply())
        except KubeError as exc:
            done = ', '.join(out_components) or 'nothing'
            try:
                write(rolled_back_record(written, target, images, now(), 'failed'))
            except KubeError:
                pass  # the failure itself is the answer
            raise KubeError('rollback to %s: %s: %s (components done: %s; later ones not started; the pods that '
                            'were ready keep serving: run the rollback again)'
                            % (target, applier.component, exc.msg, done), status=exc.status)
    write(rolled_back_record(written, target, images, now(), ROLLED_BACK))
    result = deploy.result(True, out_components, None)
    result['msg'] = '%s serves again (rolled back from %s); the database keeps the pre-deployment migrations of %s' % (
        target, written['current'].get('rolled_back_from'), written['current'].get('rolled_back_from'))
    return result
