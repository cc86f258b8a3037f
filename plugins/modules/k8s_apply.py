#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_apply
short_description: Apply a set of Kubernetes objects in one call (server-side apply, prune, wait)
version_added: 0.1.0
description:
  - Applies all given objects with server-side apply, one request per object, in dependency order
    (Namespace, ServiceAccount and RBAC, Secret, ConfigMap, PVC, Service, workloads, Jobs, CronJob, HPA, PDB,
    Ingress/HTTPRoute, others); objects of the same kind tier are applied concurrently. Deletion runs in reverse.
  - Members of the set are listed only in O(namespace) and the namespaces the set's parent records
    (C(applyset.kubernetes.io/additional-namespaces)), so a namespaced Role is enough (no ClusterRole).
    A C(Namespace) is never listed nor pruned (deleting one deletes everything in it, the set included);
    one that is no longer declared is left in place, with a warning.
  - Whether something changed is decided by the API server (object created, or its C(resourceVersion) changed).
  - In check mode the same requests are sent with C(dryRun=All), so nothing is persisted but the answer
    (changed, diff) is the one a real run would give.
  - With O(apply_set), the objects form a kubectl ApplySet (KEP-3659) whose parent is a Secret named O(apply_set)
    in O(namespace); members of the set that are no longer declared are deleted (pruned). C(kubectl) understands
    the set (C(KUBECTL_APPLYSET=true kubectl apply --prune --applyset=<name> -n <namespace> ...)).
    A C(Job) that is still running is never pruned, since deleting it kills its pod; the call is then refused before
    anything is written (apply again once it has finished).
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - fediops.mastodon.kubernetes
  - fediops.mastodon.attributes
  - fediops.mastodon.attributes.ACTIONGROUP_KUBERNETES
attributes:
  check_mode:
    support: full
    details:
      - Uses server-side dry-run; admission and validation run, nothing is stored.
  diff_mode:
    support: full
    details:
      - Before and after of each changed object; Secret C(data)/C(stringData) values and the
        C(kubectl.kubernetes.io/last-applied-configuration) annotation are masked.
  platform:
    platforms: posix
options:
  definitions:
    description:
      - The objects, as a list of dicts and/or strings with one or more YAML documents; C(List) objects are expanded.
    type: list
    elements: raw
    required: true
  namespace:
    description:
      - Namespace of namespaced objects that do not name one, and of the ApplySet parent Secret.
      - Defaults to C(default).
    type: str
  apply_set:
    description:
      - Name of the ApplySet (the parent Secret in O(namespace)). Every object gets the label
        C(applyset.kubernetes.io/part-of); members of the set no longer declared are deleted.
      - Without it nothing is pruned.
    type: str
  state:
    description:
      - V(present) applies the objects (and prunes the ApplySet).
      - V(absent) deletes them, and with O(apply_set) every member of the set and its parent.
    type: str
    choices: [present, absent]
    default: present
  field_manager:
    description: Field manager name of the server-side apply.
    type: str
    default: fediops.mastodon
  force_conflicts:
    description: Take over fields owned by another field manager instead of failing with the list of conflicts.
    type: bool
    default: false
  wait:
    description:
      - Wait for Deployments and StatefulSets to be rolled out and for Jobs to complete. A failed Job, or a rollout
        past its progress deadline, fails the task at once.
      - The wait survives a restarting API server and etcd compaction - when a watch is dropped, a connection refused,
        or the server answers HTTP 410 (C(Expired), too old resource version) or 429/5xx, the object is listed again
        and watched anew, with a short backoff, until O(wait_timeout); only then does the task fail, naming the last
        error. Other errors (such as 403) fail at once.
    type: bool
    default: false
  wait_timeout:
    description: How long to wait in total, in seconds (retries after a lost connection included).
    type: int
    default: 300
  replace_failed_jobs:
    description:
      - When a declared Job already exists and has failed (condition C(Failed=True)), delete it (propagation policy
        C(Background), so its pods go too) and create it anew in the same call, so that re-running a failed
        migration retries it. Job specs are immutable, so without this the failed Job stays and a re-run with
        O(wait=true) fails again at once.
      - The object is then reported with action V(replaced). In check mode it is reported as V(replaced) and
        nothing is deleted or created.
      - With V(false) a failed Job is left as it is (and, with O(wait=true), fails the task again).
    type: bool
    default: true
seealso:
  - name: Server-side apply
    description: How field management and conflicts work.
    link: https://kubernetes.io/docs/reference/using-api/server-side-apply/
  - name: KEP-3659 ApplySet
    description: The labels and annotations used for pruning.
    link: https://github.com/kubernetes/enhancements/tree/master/keps/sig-cli/3659-kubectl-apply-prune
'''

EXAMPLES = r'''
- name: Apply the web component and prune what is no longer rendered
  fediops.mastodon.k8s_apply:
    namespace: mastodon
    apply_set: mastodon-web
    definitions:
      - "{{ lookup('ansible.builtin.template', 'web.yaml.j2') }}"
      - apiVersion: v1
        kind: ConfigMap
        metadata:
          name: web-extra
        data:
          WEB_CONCURRENCY: "2"
    wait: true
    wait_timeout: 600

- name: Remove it again
  fediops.mastodon.k8s_apply:
    namespace: mastodon
    apply_set: mastodon-web
    definitions: []
    state: absent
'''

RETURN = r'''
objects:
  description: What happened to each object, in the order applied (or deleted).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: Kind.
      type: str
    apiVersion:
      description: API version.
      type: str
    namespace:
      description: Namespace (null for cluster-scoped objects).
      type: str
    name:
      description: Name.
      type: str
    action:
      description: V(created), V(configured), V(unchanged), V(replaced) (a failed Job deleted and created anew) or V(deleted).
      type: str
    object:
      description: The object returned by the API server, without C(managedFields), Secret values masked.
      type: dict
      returned: when applied
pruned:
  description: Members of the ApplySet that were deleted because they are no longer declared.
  returned: always
  type: list
  elements: dict
applied:
  description: Number of objects applied.
  returned: always
  type: int
apply_set:
  description: Name, namespace and id of the ApplySet.
  returned: when O(apply_set) is set
  type: dict
diff:
  description: Before and after of each changed object (Secret values masked).
  returned: in diff mode
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError, kube_argument_spec
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier, logged_arguments


class K8sApply(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def run(self):
        p = self.params
        applier = Applier(KubeClient.from_module(self.module), namespace=p['namespace'], apply_set=p['apply_set'],
                          field_manager=p['field_manager'], force_conflicts=p['force_conflicts'],
                          check_mode=self.module.check_mode, diff=self.module._diff, wait=p['wait'],
                          wait_timeout=p['wait_timeout'], replace_failed_jobs=p['replace_failed_jobs'])
        if p['state'] == 'absent':
            result = applier.absent(p['definitions'])
        else:
            result = applier.present(p['definitions'])
        for warning in applier.warnings:
            self.module.warn(warning)
        return result


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        definitions=dict(type='list', elements='raw', required=True),
        namespace=dict(type='str'),
        apply_set=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        field_manager=dict(type='str', default='fediops.mastodon'),
        force_conflicts=dict(type='bool', default=False),
        wait=dict(type='bool', default=False),
        wait_timeout=dict(type='int', default=300),
        replace_failed_jobs=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    invocation = dict(module_args=logged_arguments(module.params))
    try:
        result = K8sApply(module).run()
    except KubeError as exc:
        module.fail_json(invocation=invocation, **exc.fail_kwargs())
    module.exit_json(invocation=invocation, **result)


if __name__ == '__main__':
    main()
