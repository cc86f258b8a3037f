#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: do_database_pool
short_description: Make sure a PgBouncer connection pool and its database user exist on a DigitalOcean PostgreSQL cluster
version_added: 0.2.0
description:
  - Makes sure the connection pool O(name) of a DigitalOcean managed PostgreSQL cluster exists, and the database user
    O(user) it connects as. Adds what is missing (C(POST /v2/databases/{uuid}/users), then
    C(POST /v2/databases/{uuid}/pools)); changes nothing when both exist.
  - Everything is checked before anything is added; an invalid option or an unknown database is an error naming the option.
  - An existing pool with other settings (O(mode), O(size), O(db), O(user)) is an error naming them; the module never
    rewrites a pool that applications may be using.
  - Passwords are never returned; read the user's password with M(fediops.mastodon.do_database_info) (O(fediops.mastodon.do_database_info#module:app_pool)).
  - The API token needs the C(database:create) scope to add users and pools.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - fediops.mastodon.digitalocean
  - fediops.mastodon.attributes
  - fediops.mastodon.attributes.ACTIONGROUP_DIGITALOCEAN
attributes:
  check_mode:
    support: full
    details:
      - Only reads (C(GET)) are sent; C(changed) and the diff say what would be added.
  diff_mode:
    support: full
    details:
      - The pool's settings and the user's name before and after; no password.
  platform:
    platforms: posix
options:
  cluster_id:
    description:
      - UUID of the PostgreSQL cluster.
      - Exactly one of O(cluster_id) and O(cluster_name) is required.
    type: str
  cluster_name:
    description: Name of the PostgreSQL cluster. It is an error if no cluster or several clusters have this name.
    type: str
  name:
    description:
      - Name of the connection pool, 3 to 60 characters. Mastodon connects to it as C(DB_NAME).
    type: str
    required: true
  db:
    description: The database the pool connects to; it must exist in the cluster.
    type: str
    required: true
  user:
    description:
      - The database user the pool connects as, created when missing (with a password DigitalOcean generates).
      - This is the application's user; its migrations connect as the same user to the direct endpoint.
      - When omitted, the pool has no user and every session connects as whichever user logs in.
    type: str
  mode:
    description:
      - PgBouncer pool mode. Mastodon's web and sidekiq work with V(transaction) (and C(PREPARED_STATEMENTS=false)).
    type: str
    choices: [transaction, session, statement]
    default: transaction
  size:
    description:
      - Backend connections of the pool. DigitalOcean allows 25 per GB of RAM of the primary node, minus 3, shared by
        all the pools of the cluster.
    type: int
    default: 20
seealso:
  - module: fediops.mastodon.do_database_info
  - name: Manage connection pools (DigitalOcean documentation)
    description: PgBouncer pools on DigitalOcean managed PostgreSQL, and their modes.
    link: https://docs.digitalocean.com/products/databases/postgresql/how-to/manage-connection-pools/
'''

EXAMPLES = r'''
- name: The pool Mastodon's web and sidekiq use, and its own database user
  fediops.mastodon.do_database_pool:
    cluster_name: mastodon-pg
    name: mastodon
    db: mastodon_production
    user: mastodon
    mode: transaction
    size: 20

- name: The application's user and its password, for the deploy (never the admin's)
  fediops.mastodon.do_database_info:
    cluster_name: mastodon-pg
    app_pool: mastodon
    include_passwords: true
  register: db
  no_log: true
'''

RETURN = r'''
pool:
  description:
    - The pool (as the API returned it on creation, or as it exists); C(name), C(mode), C(size), C(db), C(user) and,
      when it exists, C(connection) and C(private_connection) (C(host), C(port), C(user), C(database), C(ssl) and
      C(uri) without password).
    - In check mode, when the pool would be created, only the settings.
  returned: success
  type: dict
user_created:
  description: Whether the user O(user) was (or, in check mode, would be) created.
  returned: success
  type: bool
cluster_id:
  description: UUID of the cluster.
  returned: success
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import (
    DigitalOceanError, POOL_MODES, all_passwords, client_from_module, collect_passwords, connection_info,
    digitalocean_argument_spec, ensure_pool, get_cluster, pool_view, validate_pool_spec)


def run(module):
    params = module.params
    spec = dict((key, params[key]) for key in ('name', 'mode', 'size', 'db', 'user'))
    validate_pool_spec(spec)
    client = client_from_module(module)
    cluster = get_cluster(client, params['cluster_id'], params['cluster_name'])
    module.no_log_values.update(all_passwords(collect_passwords(cluster, [])))
    outcome = ensure_pool(client, cluster, spec, check_mode=module.check_mode)
    pool = outcome['pool']
    module.no_log_values.update(all_passwords(collect_passwords({}, [pool])))
    view = pool_view(pool)
    for key in ('connection', 'private_connection'):
        if isinstance(pool.get(key), dict):
            view[key] = connection_info(pool[key])
    result = dict(changed=outcome['changed'], pool=view, user_created=outcome['user_created'], cluster_id=cluster['id'])
    if module._diff:
        result['diff'] = outcome['diff']
    return result


def main():
    argument_spec = digitalocean_argument_spec()
    argument_spec.update(
        cluster_id=dict(type='str'),
        cluster_name=dict(type='str'),
        name=dict(type='str', required=True),
        db=dict(type='str', required=True),
        user=dict(type='str'),
        mode=dict(type='str', choices=list(POOL_MODES), default='transaction'),
        size=dict(type='int', default=20),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('cluster_id', 'cluster_name')],
        required_one_of=[('cluster_id', 'cluster_name')],
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except DigitalOceanError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
