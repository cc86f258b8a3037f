#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: do_database_ca
short_description: Fetch, validate and store the CA certificate of a DigitalOcean managed database
version_added: 0.1.0
description:
  - Retrieves the private CA certificate DigitalOcean signs a managed database cluster's server certificates with
    (C(GET /v2/databases/{uuid}/ca)), checks it and optionally writes it to a file.
  - The certificate must decode from base64 to one PEM X.509 certificate with C(basicConstraints CA:TRUE) that has
    not expired. A certificate that expires within 30 days is accepted with a warning.
  - The file is replaced atomically (a temporary file in the same directory, then a rename) and only when its
    content or attributes differ. After any failure an existing O(dest) is left unchanged.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - ansible.builtin.files
  - fediops.mastodon.digitalocean
  - fediops.mastodon.attributes
  - fediops.mastodon.attributes.ACTIONGROUP_DIGITALOCEAN
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the PEM text before and after.
  platform:
    platforms: posix
options:
  cluster_id:
    description:
      - UUID of the database cluster.
      - Costs exactly one API request. RV(cluster.name) and RV(cluster.engine) are then not known and returned as V(null).
      - Mutually exclusive with O(cluster_name); one of them is required.
    type: str
  cluster_name:
    description:
      - Name of the database cluster. Costs one list request (all pages) plus the CA request.
      - It is an error if no cluster or more than one cluster has this name.
    type: str
  dest:
    description:
      - Path of the file to write the PEM certificate to. Its directory must exist.
      - If O(mode) is not set the file gets mode V(0644).
      - Without O(dest) the module only returns the certificate.
    type: path
requirements:
  - cryptography
seealso:
  - module: fediops.mastodon.do_database_info
'''

EXAMPLES = r'''
- name: Store the CA of the production database where libpq and node find it
  fediops.mastodon.do_database_ca:
    cluster_name: mastodon-pg
    dest: /etc/mastodon/do-ca.pem
    owner: root
    group: mastodon
    mode: '0644'
  delegate_to: localhost

- name: Get the CA by cluster UUID (token from DIGITALOCEAN_ACCESS_TOKEN)
  fediops.mastodon.do_database_ca:
    cluster_id: 9cc10173-e9ea-4176-9dbc-a4cee4c4ff30
  register: db_ca

- name: Show its fingerprint
  ansible.builtin.debug:
    msg: "{{ db_ca.sha256_fingerprint }} valid until {{ db_ca.not_after }}"
'''

RETURN = r'''
pem:
  description: The CA certificate in PEM form.
  returned: success
  type: str
sha256_fingerprint:
  description: SHA-256 fingerprint of the certificate, colon-separated upper-case hex.
  returned: success
  type: str
  sample: "5E:1C:...:9A"
not_after:
  description: End of the certificate's validity, ISO 8601 in UTC.
  returned: success
  type: str
  sample: "2035-01-01T00:00:00+00:00"
subject:
  description: Subject of the certificate, RFC 4514.
  returned: success
  type: str
  sample: "CN=9cc10173-e9ea-4176-9dbc-a4cee4c4ff30 Project CA"
cluster:
  description: The cluster the CA belongs to. O(cluster_id) alone does not reveal name and engine; they are V(null) then.
  returned: success
  type: dict
  contains:
    id:
      description: Cluster UUID.
      type: str
    name:
      description: Cluster name.
      type: str
    engine:
      description: Engine slug (V(pg), V(valkey), ...).
      type: str
dest:
  description: The file written, if O(dest) was given.
  returned: when O(dest) is set
  type: str
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import (
    DigitalOceanError, client_from_module, digitalocean_argument_spec, find_cluster_by_name, validate_cluster_id)
from ansible_collections.fediops.mastodon.plugins.module_utils._x509 import (
    CRYPTOGRAPHY_IMPORT_ERROR, HAS_CRYPTOGRAPHY, X509Error, load_ca_from_base64)

DEFAULT_MODE = '0644'


class DatabaseCA(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.dest = self.params['dest']

    def check_input(self):
        if self.params['cluster_id'] is not None:
            validate_cluster_id(self.params['cluster_id'])
        if self.dest is not None:
            parent = os.path.dirname(os.path.abspath(self.dest)) or '.'
            if not os.path.isdir(parent):
                raise DigitalOceanError('dest: directory %s does not exist' % parent)
            if os.path.isdir(self.dest):
                raise DigitalOceanError('dest: %s is a directory, not a file' % self.dest)
            if os.path.exists(self.dest) and not os.access(self.dest, os.R_OK):
                raise DigitalOceanError('dest: %s is not readable' % self.dest)

    def fetch(self):
        client = client_from_module(self.module)
        if self.params['cluster_id'] is not None:
            cluster = dict(id=self.params['cluster_id'], name=None, engine=None)
        else:
            found = find_cluster_by_name(client, self.params['cluster_name'])
            cluster = dict(id=found.get('id'), name=found.get('name'), engine=found.get('engine'))
            validate_cluster_id(cluster['id'])
        encoded = client.database_ca(cluster['id'])
        what = 'the CA certificate of database cluster %s' % (cluster['name'] or cluster['id'])
        pem, info, warnings = load_ca_from_base64(encoded, what=what)
        return cluster, pem, info, warnings

    def write(self, pem):
        """Write pem to dest if it differs; returns (changed, diff)."""
        b_pem = to_bytes(pem)
        before = None
        if os.path.exists(self.dest):
            with open(self.dest, 'rb') as handle:
                before = handle.read()
        changed = before != b_pem
        diff = dict(before_header=self.dest, after_header=self.dest,
                    before=to_native(before, errors='surrogate_or_replace') if before is not None else '', after=pem)
        if changed and not self.module.check_mode:
            directory = os.path.dirname(os.path.abspath(self.dest))
            fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.dest), dir=directory)
            try:
                with os.fdopen(fd, 'wb') as handle:
                    handle.write(b_pem)
                    handle.flush()
                    os.fsync(handle.fileno())
            except (IOError, OSError) as exc:
                os.unlink(tmp)
                raise DigitalOceanError('dest: cannot write a temporary file in %s: %s' % (directory, to_native(exc)))
            self.module.atomic_move(tmp, self.dest)
        if os.path.exists(self.dest):
            file_args = self.module.load_file_common_arguments(self.params, path=self.dest)
            if file_args['mode'] is None:
                file_args['mode'] = DEFAULT_MODE
            changed = self.module.set_fs_attributes_if_different(file_args, changed)
        return changed, diff

    def run(self):
        self.check_input()
        cluster, pem, info, warnings = self.fetch()
        for warning in warnings:
            self.module.warn(warning)
        result = dict(changed=False, pem=pem, cluster=cluster, sha256_fingerprint=info['sha256_fingerprint'],
                      not_after=info['not_after'], subject=info['subject'])
        if self.dest is not None:
            result['changed'], diff = self.write(pem)
            result['dest'] = self.dest
            if self.module._diff and diff['before'] != diff['after']:
                result['diff'] = diff
        return result


def main():
    argument_spec = digitalocean_argument_spec()
    argument_spec.update(
        cluster_id=dict(type='str'),
        cluster_name=dict(type='str'),
        dest=dict(type='path'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('cluster_id', 'cluster_name')],
        required_one_of=[('cluster_id', 'cluster_name')],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        result = DatabaseCA(module).run()
    except DigitalOceanError as exc:
        module.fail_json(**exc.fail_kwargs())
    except X509Error as exc:
        module.fail_json(msg=to_native(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
