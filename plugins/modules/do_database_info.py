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
  - Valkey clusters (engine V(valkey)) and the clusters created as Redis before Valkey replaced it (engine V(redis))
    are both Redis clusters to this module; their C(REDIS_URL) is returned under RV(clusters[].passwords).
  - With O(include_firewall=true) it also returns each cluster's trusted sources (one more request per cluster) and,
    with O(kubernetes_cluster_id), whether they admit that Kubernetes cluster.
  - With O(app_user) or O(app_pool) it names the database user the application and its migrations connect as, and
    returns that user's password instead of the admin (C(doadmin)) password.
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
      - With O(app_user) or O(app_pool), only the application user's password is returned for PostgreSQL clusters
        (C(app_user) in RV(clusters[].passwords)); the admin passwords only with O(include_admin_password=true).
      - "B(Mark the task with C(no_log: true)) when you set this; Ansible cannot hide return values otherwise."
      - When V(false), any password the API returned is also masked if it shows up anywhere in the output.
    type: bool
    default: false
  include_admin_password:
    description:
      - With O(app_user) or O(app_pool) and O(include_passwords=true), also return the admin user's and every other
        password of PostgreSQL clusters, as without O(app_user).
      - Leave it V(false) unless a task really needs the admin user; the application and its migrations do not.
    type: bool
    default: false
  include_firewall:
    description:
      - Also return each cluster's trusted sources (firewall rules) under RV(clusters[].firewall_rules).
      - One more request per cluster (C(GET /v2/databases/{uuid}/firewall)).
      - Implied by O(kubernetes_cluster_id).
    type: bool
    default: false
  kubernetes_cluster_id:
    description:
      - UUID of the DigitalOcean Kubernetes cluster the applications run in.
      - When set, RV(clusters[].trusted_sources_problem) says whether each cluster's trusted sources admit it.
      - A cluster without trusted sources admits every source.
    type: str
  app_user:
    description:
      - Name of the database user the application (and its migrations) connect as, on PostgreSQL clusters.
      - Defaults to the C(user) of O(app_pool).
      - Its password comes from the pool when the pool uses this user, else from the users endpoint (the token needs
        the C(database:view_credentials) scope).
    type: str
  app_pool:
    description:
      - Name of the PgBouncer connection pool the application uses; its C(user) is the application's database user
        unless O(app_user) names another.
      - The pool must exist (create it with M(fediops.mastodon.do_database_pool)).
    type: str
seealso:
  - module: fediops.mastodon.do_database_ca
  - module: fediops.mastodon.do_database_pool
'''

EXAMPLES = r'''
- name: Endpoints of the Mastodon database
  fediops.mastodon.do_database_info:
    cluster_name: mastodon-pg
  register: db

- name: Use the transaction-mode pool for web and sidekiq
  ansible.builtin.set_fact:
    db_host: "{{ (db.clusters[0].pools | selectattr('mode', 'eq', 'transaction') | first).private_connection.host }}"

- name: The application's user (the pool's), its password and the trusted sources, without the admin password
  fediops.mastodon.do_database_info:
    cluster_name: mastodon-pg
    app_pool: mastodon
    include_passwords: true
    kubernetes_cluster_id: bd5f5959-5e1e-4205-a714-a914373942af
  register: db_app
  no_log: true

- name: Stop when the database does not admit the Kubernetes cluster
  ansible.builtin.fail:
    msg: "{{ db_app.cluster.trusted_sources_problem }}"
  when: db_app.cluster.trusted_sources_problem

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
    firewall_rules:
      description:
        - The trusted sources of the cluster, as the API lists them; each has C(uuid), C(type) (V(k8s), V(droplet),
          V(ip_addr), V(tag), V(app)), C(value), C(description) and C(created_at).
        - An empty list means the cluster accepts connections from every source.
      returned: when O(include_firewall=true) or O(kubernetes_cluster_id) is set
      type: list
      elements: dict
    trusted_sources_problem:
      description:
        - V(null) when the trusted sources admit O(kubernetes_cluster_id) (a C(k8s) rule with its id, a C(tag) rule
          with a tag every node of the cluster carries, or no rules at all).
        - Otherwise the message naming the database and the trusted source to add (doctl command and control panel).
      returned: when O(kubernetes_cluster_id) is set
      type: str
    app_user:
      description:
        - The application's database user on a PostgreSQL cluster; C(name), C(role) (V(normal), or V(primary) for the
          admin user), C(source) (V(operator) for O(app_user), V(pool) for the user of O(app_pool)) and C(pool).
        - Its password is C(app_user) in RV(clusters[].passwords).
      returned: when O(app_user) or O(app_pool) is set, for PostgreSQL clusters
      type: dict
    passwords:
      description:
        - Passwords by connection key (C(connection), C(private_connection), ...), by user name (C(users)) and by
          pool name (C(pools)).
        - With O(app_user) or O(app_pool), for PostgreSQL clusters only C(app_user) (the application user's password),
          unless O(include_admin_password=true).
        - For Valkey and Redis clusters also C(redis_url), the C(REDIS_URL) by connection key (C(rediss://) with user
          and password).
      returned: when O(include_passwords=true)
      type: dict
cluster:
  description: The cluster, when selected by O(cluster_id) or O(cluster_name); same keys as an element of RV(clusters).
  returned: when O(cluster_id) or O(cluster_name) is set
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import (
    POOL_ENGINES, REDIS_ENGINES, DigitalOceanError, all_passwords, application_user, client_from_module, cluster_info,
    collect_passwords, digitalocean_argument_spec, get_cluster, redis_url, trusted_sources_problem,
    UUID_RE, validate_cluster_id)


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
        if params['kubernetes_cluster_id'] is not None and not UUID_RE.match(params['kubernetes_cluster_id']):
            raise DigitalOceanError('kubernetes_cluster_id must be a Kubernetes cluster UUID such as '
                                    'bd5f5959-5e1e-4205-a714-a914373942af, got %r' % (params['kubernetes_cluster_id'],))
        for key in ('app_user', 'app_pool'):
            if params[key] is not None and not params[key].strip():
                raise DigitalOceanError('%s must not be empty' % key)
        want_app = params['app_user'] is not None or params['app_pool'] is not None
        client = client_from_module(self.module)
        if params['tag'] is None:
            clusters = [get_cluster(client, params['cluster_id'], params['cluster_name'])]
        else:
            clusters = [c for c in client.databases(tag=params['tag']) if isinstance(c, dict)]
        result = dict(changed=False, clusters=[])
        for cluster in clusters:
            engine = cluster.get('engine')
            pools = []
            if (params['include_pools'] or params['app_pool']) and engine in POOL_ENGINES:
                pools = client.database_pools(cluster['id'])
            info = cluster_info(cluster, pools if params['include_pools'] else [])
            passwords = collect_passwords(cluster, pools)
            if engine in REDIS_ENGINES:
                urls = dict((key, redis_url(cluster, private=key == 'private_connection'))
                            for key in ('connection', 'private_connection') if isinstance(cluster.get(key), dict))
                if urls:
                    passwords['redis_url'] = urls
            returned = passwords
            if want_app and (engine in POOL_ENGINES or params['tag'] is None):
                app = application_user(client, cluster, pools, params['app_pool'], params['app_user'])
                info['app_user'] = dict((key, app[key]) for key in ('name', 'role', 'source', 'pool'))
                returned = dict(passwords) if params['include_admin_password'] else {}
                returned['app_user'] = app['password']
                passwords = dict(passwords, app_user=app['password'])
            if params['include_firewall'] or params['kubernetes_cluster_id']:
                rules = client.database_firewall_rules(cluster['id'])
                info['firewall_rules'] = rules
                if params['kubernetes_cluster_id']:
                    info['trusted_sources_problem'] = trusted_sources_problem(
                        cluster.get('name'), rules, params['kubernetes_cluster_id'], database_id=cluster.get('id'))
            if params['include_passwords']:
                info['passwords'] = returned
            # Belt and braces: should a password hide in some other field, the output masks it; so are the ones
            # this task does not return (the admin's, when the application's user was asked for).
            self.module.no_log_values.update(all_passwords(passwords) - all_passwords(returned if params['include_passwords'] else {}))
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
        include_admin_password=dict(type='bool', default=False),
        include_firewall=dict(type='bool', default=False),
        kubernetes_cluster_id=dict(type='str'),
        app_user=dict(type='str'),
        app_pool=dict(type='str'),
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
