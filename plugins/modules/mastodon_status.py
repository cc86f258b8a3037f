#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: mastodon_status
short_description: What a Mastodon deployment runs right now - versions, rollouts, migrations, database CA, updates
version_added: 0.1.0
description:
  - Reads, with five C(GET) requests and no write, the Deployments, Pods and Jobs labelled
    C(app.kubernetes.io/instance=<name>) in O(namespace), the database CA Secret C(<name>-db-ca) and the deploy
    record, the ConfigMap C(<name>-deploy-record) that the deploy writes.
  - Returns, per component (web, streaming, each sidekiq group), the version it is deployed with and the versions
    its pods still run, its replicas and its rollout state; the last pre- and post-deployment migration Jobs with
    their outcome; the expiry of the database CA certificate; and, from the deploy record, the deployed version,
    the one before it, the deploy's phase and outcome, and whether post-deployment migrations are still to run
    (C(pending), or C(held) by C(migrations_post=hold)) with the command that runs them.
  - With O(update_check_url), asks Mastodon's update check (C(GET <url>?version=X.Y.Z), as Mastodon's admin UI
    does) which releases are newer than the running version and whether one is urgent (a security release). An
    unreachable service or an answer of another shape is a warning in RV(updates), never a failure.
  - RV(table) is the same as a compact text table; C(playbooks/status.yml) prints it.
  - Changes nothing; runs in check mode too.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - fediops.mastodon.kubernetes
  - fediops.mastodon.attributes
  - fediops.mastodon.attributes.INFO_MODULE
  - fediops.mastodon.attributes.ACTIONGROUP_KUBERNETES
attributes:
  platform:
    platforms: posix
options:
  name:
    description: The deployment's name (the C(config_name) of the deploy).
    type: str
    default: mastodon
  namespace:
    description: The namespace it is deployed in (the C(config_namespace) of the deploy).
    type: str
    required: true
  update_check_url:
    description:
      - Mastodon's update check, such as V(https://api.joinmastodon.org/update-check) (the one Mastodon's admin UI
        uses). Empty (the default) checks nothing; C(playbooks/status.yml) passes C(config_update_check_url).
    type: str
    default: ''
  update_check_timeout:
    description: Seconds to wait for the update check.
    type: int
    default: 10
seealso:
  - module: fediops.mastodon.k8s_apply
'''

EXAMPLES = r'''
- name: Read the state of the deployment
  fediops.mastodon.mastodon_status:
    name: mastodon
    namespace: mastodon
  register: mastodon

- name: Show it
  ansible.builtin.debug:
    msg: "{{ mastodon.table }}"

- name: Read it, with the releases newer than the running one
  fediops.mastodon.mastodon_status:
    namespace: mastodon
    update_check_url: https://api.joinmastodon.org/update-check
  register: mastodon

- name: Warn about an urgent (security) release
  ansible.builtin.debug:
    msg: "Urgent Mastodon release: {{ mastodon.updates.available | map(attribute='version') | join(', ') }}"
  when: mastodon.updates.urgent

- name: Stop when a rollout or a migration failed
  ansible.builtin.assert:
    that: mastodon.healthy
    fail_msg: "{{ mastodon.table | join('\n') }}"
'''

RETURN = r'''
healthy:
  description: Every rollout complete, every last migration Job succeeded, the database CA (if any) not expired and
    the last deploy (if recorded) not failed.
  returned: always
  type: bool
table:
  description: The status as lines of a compact text table.
  returned: always
  type: list
  elements: str
  sample:
    - "Mastodon mastodon in namespace mastodon: healthy"
    - "COMPONENT          VERSION  READY  UP-TO-DATE  ROLLOUT"
    - "web                v4.5.2   2/2    2           complete"
components:
  description: One entry per Deployment of the instance, web and streaming first.
  returned: always
  type: list
  elements: dict
  contains:
    component:
      description: The component (C(web), C(streaming), C(sidekiq-<group>)).
      type: str
    deployment:
      description: The Deployment's name.
      type: str
    version:
      description: The image tag (or digest) the Deployment asks for.
      type: str
    running_versions:
      description: The image tags the component's running or starting pods have.
      type: list
      elements: str
    serving_versions:
      description:
        - The image tags of the component's ready pods that are not terminating (those that receive traffic).
        - During a rollout to an image that never becomes ready, the old tag only; the RV(table) then shows
          C(<new> (serving <old>)).
      type: list
      elements: str
    replicas:
      description: Desired replicas.
      type: int
    ready_replicas:
      description: Ready replicas.
      type: int
    updated_replicas:
      description: Replicas of the current pod template.
      type: int
    rollout:
      description: C(complete), C(progressing) or C(failed) (the progress deadline was exceeded).
      type: str
    message:
      description: The rollout state in words.
      type: str
migrations:
  description: The last migration Job of each phase (C(pre), C(post), C(downtime) - the Job of an upgrade with downtime) that exists.
  returned: always
  type: list
  elements: dict
  contains:
    phase:
      description: C(pre), C(post) or C(downtime).
      type: str
    job:
      description: The Job's name.
      type: str
    version:
      description: The Mastodon version it migrated to.
      type: str
    outcome:
      description: C(succeeded), C(failed) or C(running).
      type: str
    finished:
      description: When it completed or failed (UTC), or null.
      type: str
    duration_seconds:
      description: How long it ran, or null.
      type: int
    message:
      description: The outcome in words (the failure reason for a failed Job).
      type: str
database_ca:
  description: The database CA certificate kept in the Secret C(<name>-db-ca) (key C(ca.crt)).
  returned: always
  type: dict
  contains:
    secret:
      description: The Secret's name.
      type: str
    present:
      description: Whether the Secret exists (there is none when the database is not verified against a private CA).
      type: bool
    state:
      description: C(ok), C(expires soon) (fewer than 30 days left), C(expired), C(invalid) or C(absent).
      type: str
    subject:
      description: The certificate's subject.
      type: str
      returned: when the certificate could be read
    not_after:
      description: The certificate's expiry (UTC).
      type: str
      returned: when the certificate could be read
    days_left:
      description: Whole days until it expires (negative once it has).
      type: int
      returned: when the certificate could be read
deploy_record:
  description: The current entry of the deploy record (ConfigMap C(<name>-deploy-record), key C(record.json)).
  returned: always
  type: dict
  contains:
    configmap:
      description: The ConfigMap's name.
      type: str
    present:
      description: Whether the record exists (there is none before the first deploy that writes it).
      type: bool
    state:
      description: C(ok), C(absent) or C(invalid) (the key is missing or not the record's JSON).
      type: str
    version:
      description: The version the last deploy deployed.
      type: str
      returned: when the record could be read
    previous_version:
      description: The version deployed before it.
      type: str
      returned: when the record could be read
    phase:
      description: How far the last deploy went (C(config), C(pre), C(rollout), C(post)).
      type: str
      returned: when the record could be read
    outcome:
      description: C(running), C(ok) or C(failed).
      type: str
      returned: when the record could be read
    post_migrations:
      description: C(done), C(running) (their Job outlived C(migrations_wait_timeout) and was left
        running; a re-run of the deploy re-attaches to it), C(pending) (the deploy has not run them) or C(held) (C(migrations_post=hold)).
      type: str
      returned: when the record could be read
    migrations_running:
      description: C(pre) or C(post) when a deploy left that phase's migration Job running (it is never killed); a re-run of the deploy
        with the same version re-attaches to it and goes on. None otherwise.
      type: str
      returned: when the record could be read
    post_migrations_pending:
      description: Whether post-deployment migrations are still to run (C(pending) or C(held)).
      type: bool
    schema_version:
      description: The database schema version the pre-deployment migrations found.
      type: str
      returned: when the record could be read
    started_at:
      description: When the last deploy started (UTC).
      type: str
      returned: when the record could be read
    updated_at:
      description: When the record was last written (UTC).
      type: str
      returned: when the record could be read
    message:
      description: Why the record could not be read.
      type: str
      returned: when the state is C(invalid)
updates:
  description: Releases newer than the running version, from O(update_check_url).
  returned: always
  type: dict
  contains:
    checked:
      description: Whether the update check was asked (false when O(update_check_url) is empty).
      type: bool
    running_version:
      description: The version compared (web's image tag, else the deploy record's).
      type: str
    available:
      description: The newer releases, newest first.
      type: list
      elements: dict
      contains:
        version:
          description: The release.
          type: str
        urgent:
          description: Whether it is urgent (a security release).
          type: bool
        type:
          description: C(patch), C(minor) or C(major).
          type: str
        release_notes:
          description: The URL of its release notes.
          type: str
    urgent:
      description: Whether one of them is urgent.
      type: bool
    warning:
      description: Why the check gave no answer to use (unreachable, another HTTP status, another shape), or null.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError, kube_argument_spec
from ansible_collections.fediops.mastodon.plugins.module_utils._status import collect, render_table


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        name=dict(type='str', default='mastodon'),
        namespace=dict(type='str', required=True),
        update_check_url=dict(type='str', default=''),
        update_check_timeout=dict(type='int', default=10),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if module.params['update_check_timeout'] < 1:
        module.fail_json(msg='update_check_timeout must be at least 1 second, got %d' % module.params['update_check_timeout'])
    try:
        status = collect(KubeClient.from_module(module), module.params['namespace'], module.params['name'],
                         update_check_url=module.params['update_check_url'],
                         update_check_timeout=module.params['update_check_timeout'])
    except KubeError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(changed=False, table=render_table(status), healthy=status['healthy'],
                     components=status['components'], migrations=status['migrations'],
                     database_ca=status['database_ca'], deploy_record=status['deploy_record'],
                     updates=status['updates'])


if __name__ == '__main__':
    main()
