#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_secret_info
short_description: Read one Kubernetes Secret and return its values decoded
version_added: 0.1.0
description:
  - Reads the Secret O(name) in O(namespace) with one C(GET) and returns whether it exists and its C(data),
    base64-decoded to text.
  - A missing Secret, or a missing namespace, is not an error - RV(exists=false) and empty RV(data).
  - B(The result holds secret values. Always set C(no_log=true) on the task) (Ansible cannot hide single return
    values). The module keeps the values out of its own messages, but returns them as they are - the
    registered result carries the real values, so that later tasks can use them.
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
    description: Name of the Secret.
    type: str
    required: true
  namespace:
    description: Namespace of the Secret.
    type: str
    default: default
seealso:
  - module: fediops.mastodon.k8s_apply
'''

EXAMPLES = r'''
- name: Read the Secret that keeps the generated secrets
  fediops.mastodon.k8s_secret_info:
    name: mastodon-generated-secrets
    namespace: mastodon
  register: kept
  no_log: true

- name: Use the values (still without logging them)
  ansible.builtin.set_fact:
    first_install: "{{ not kept.exists }}"
    secret_key_base: "{{ kept.data.SECRET_KEY_BASE | default('') }}"
  no_log: true
'''

RETURN = r'''
exists:
  description: Whether the Secret exists.
  returned: always
  type: bool
data:
  description:
    - The Secret's C(data), each value base64-decoded to text (UTF-8). Empty when the Secret does not exist.
    - Secret values; register the result with C(no_log=true).
  returned: always
  type: dict
binary_data:
  description: Values that are not UTF-8 text, still base64-encoded, by key. Secret values.
  returned: always
  type: dict
type:
  description: The Secret's C(type), for example V(Opaque); null when it does not exist.
  returned: always
  type: str
resource_version:
  description: The Secret's C(metadata.resourceVersion); null when it does not exist.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError, kube_argument_spec
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_secret_info import read_secret


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        namespace=dict(type='str', default='default'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = read_secret(KubeClient.from_module(module), module.params['namespace'], module.params['name'])
    except KubeError as exc:
        module.fail_json(**exc.fail_kwargs())
    result.pop('annotations', None)  # the deploy's own bookkeeping (generations of the kept secrets)
    # While anything could still go wrong the values are masked in every message; the registered result must
    # carry the real values (the task sets no_log: true), so they are released from no_log_values at the end.
    values = set(v for v in list(result['data'].values()) + list(result['binary_data'].values()) if v)
    module.no_log_values.update(values)
    result['invocation'] = dict(module_args=remove_values(module.params, module.no_log_values))
    module.no_log_values.difference_update(values)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
