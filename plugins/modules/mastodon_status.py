#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: mastodon_status
short_description: What a Mastodon deployment runs right now - versions, rollouts, migrations, database CA
version_added: 0.1.0
description:
  - Reads, with four C(GET) requests and no write, the Deployments, Pods and Jobs labelled
    C(app.kubernetes.io/instance=<name>) in O(namespace) and the database CA Secret C(<name>-db-ca).
  - Returns, per component (web, streaming, each sidekiq group), the version it is deployed with and the versions
    its pods still run, its replicas and its rollout state; the last pre- and post-deployment migration Jobs with
    their outcome; and the expiry of the database CA certificate.
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

- name: Stop when a rollout or a migration failed
  ansible.builtin.assert:
    that: mastodon.healthy
    fail_msg: "{{ mastodon.table | join('\n') }}"
'''

RETURN = r'''
healthy:
  description: Every rollout complete, every last migration Job succeeded and the database CA (if any) not expired.
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
  description: The last migration Job of each phase (C(pre), C(post)) that exists.
  returned: always
  type: list
  elements: dict
  contains:
    phase:
      description: C(pre) or C(post).
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
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError, kube_argument_spec
from ansible_collections.fediops.mastodon.plugins.module_utils._status import collect, render_table


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        name=dict(type='str', default='mastodon'),
        namespace=dict(type='str', required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        status = collect(KubeClient.from_module(module), module.params['namespace'], module.params['name'])
    except KubeError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(changed=False, table=render_table(status), healthy=status['healthy'],
                     components=status['components'], migrations=status['migrations'],
                     database_ca=status['database_ca'])


if __name__ == '__main__':
    main()
