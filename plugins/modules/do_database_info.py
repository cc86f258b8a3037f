#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: do_database_info
short_description: Connection details of DigitalOcean managed database clusters
version_added: 0.1.0
description:
  - Looks up DigitalOcean managed database clusters by UUID, name or tag and returns their engine, version,
    public and private (and standby) connection endpoints and, for PostgreSQL, their PgBouncer connection pools.
  - Connection URIs are returned without password. Passwords are only returned with O(include_passwords=true),
    and then only under the RV(clusters[].passwords) key.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - fediops.mastodon.digitalocean
  - fediops.mastodon.attributes
  - fediops.mastodon.attributes.INFO_MODULE
  - fediops.mastodon.attributes.ACTIONGROUP_DIGITALOCEAN
attributes:
  platform:
    platforms: posix
options:
  cluster_id:
    description:
      - UUID of one database cluster.
      - Exactly one of O(cluster_id), O(cluster_name) and O(tag) is required.
    type: str
  cluster_name:
    description: Name of one database cluster. It is an error if no cluster or several clusters have this name.
    type: str
  tag:
    description: Return every database cluster with this tag (possibly none).
    type: str
  include_pools:
    description: Also list the connection pools of PostgreSQL clusters (one more request per cluster).
    type: bool
    default: true
  include_passwords:
    description:
      - Return the passwords of the connections, users and pools under RV(clusters[].passwords).
      - "B(Mark the task with C(no_log: true)) when you set this; Ansible cannot hide return values otherwise."
      - When V(false), any password the API returned is also masked if it shows up anywhere in the output.
    type: bool
    default: false
seealso:
  - module: fediops.mastodon.do_database_ca
'''

EXAMPLES = r'''
- name: Endpoints of the Mastodon database
  fediops.mastodon.do_database_info:
    cluster_name: mastodon-pg
  register: db

- name: Use the transaction-mode pool for web and sidekiq
  ansible.builtin.set_fact:
    db_host: "{{ (db.clusters[0].pools | selectattr('mode', 'eq', 'transaction') | first).private_connection.host }}"

- name: Passwords too (keep them out of logs)
  fediops.mastodon.do_database_info:
    tag: mastodon
    include_passwords: true
  register: db_secrets
  no_log: true
'''

RETURN = r'''
clusters:
  description: The clusters found (one for O(cluster_id) and O(cluster_name); zero or more for O(tag)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Cluster UUID.
      type: str
    name:
      description: Cluster name.
      type: str
    engine:
      description: Engine slug, for example V(pg), V(valkey), V(redis).
      type: str
    version:
      description: Major version of the engine.
      type: str
    semantic_version:
      description: Full version of the engine, if the API returns it.
      type: str
    region:
      description: Region slug.
      type: str
    size:
      description: Node size slug.
      type: str
    num_nodes:
      description: Number of nodes.
      type: int
    status:
      description: Cluster status (V(online), V(creating), ...).
      type: str
    tags:
      description: Tags of the cluster.
      type: list
      elements: str
    db_names:
      description: Databases in the cluster.
      type: list
      elements: str
    users:
      description: Names of the database users (never their passwords).
      type: list
      elements: str
    private_network_uuid:
      description: VPC of the cluster.
      type: str
    connection:
      description: Public endpoint. Keys C(host), C(port), C(user), C(database), C(ssl) and C(uri) (without password).
      type: dict
    private_connection:
      description: VPC endpoint, same keys as RV(clusters[].connection).
      type: dict
    standby_connection:
      description: Public endpoint of the standby nodes, for clusters that have them.
      returned: when the cluster has standby nodes
      type: dict
    standby_private_connection:
      description: VPC endpoint of the standby nodes, for clusters that have them.
      returned: when the cluster has standby nodes
      type: dict
    pools:
      description:
        - PgBouncer connection pools (PostgreSQL only; empty otherwise or with O(include_pools=false)).
        - Each has C(name), C(mode), C(size), C(db), C(user), C(connection) and C(private_connection) (same keys as
          RV(clusters[].connection)).
      type: list
      elements: dict
    passwords:
      description:
        - Passwords by connection key (C(connection), C(private_connection), ...), by user name (C(users)) and by
          pool name (C(pools)).
      returned: when O(include_passwords=true)
      type: dict
cluster:
  description: The cluster, when selected by O(cluster_id) or O(cluster_name); same keys as an element of RV(clusters).
  returned: when O(cluster_id) or O(cluster_name) is set
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import (
    POOL_ENGINES, DigitalOceanError, all_passwords, client_from_module, cluster_info, collect_passwords,
    digitalocean_argument_spec, find_cluster_by_name, validate_cluster_id)


class DatabaseInfo(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def run(self):
        params = self.params
        if params['cluster_id'] is not None:
            validate_cluster_id(params['cluster_id'])
        if params['tag'] is not None and not params['tag'].strip():
            raise DigitalOceanError('tag must not be empty')
        client = client_from_module(self.module)
        if params['cluster_id'] is not None:
            clusters = [client.database(params['cluster_id'])]
        elif params['cluster_name'] is not None:
            clusters = [find_cluster_by_name(client, params['cluster_name'])]
        else:
            clusters = [c for c in client.databases(tag=params['tag']) if isinstance(c, dict)]
        result = dict(changed=False, clusters=[])
        for cluster in clusters:
            pools = []
            if params['include_pools'] and cluster.get('engine') in POOL_ENGINES:
                pools = client.database_pools(cluster['id'])
            info = cluster_info(cluster, pools)
            passwords = collect_passwords(cluster, pools)
            if params['include_passwords']:
                info['passwords'] = passwords
            else:
                # Belt and braces: should a password hide in some other field, the output masks it.
                self.module.no_log_values.update(all_passwords(passwords))
            result['clusters'].append(info)
        if params['tag'] is None:
            result['cluster'] = result['clusters'][0]
        return result


def main():
    argument_spec = digitalocean_argument_spec()
    argument_spec.update(
        cluster_id=dict(type='str'),
        cluster_name=dict(type='str'),
        tag=dict(type='str'),
        include_pools=dict(type='bool', default=True),
        include_passwords=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('cluster_id', 'cluster_name', 'tag')],
        required_one_of=[('cluster_id', 'cluster_name', 'tag')],
        supports_check_mode=True,
    )
    try:
        result = DatabaseInfo(module).run()
    except DigitalOceanError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
