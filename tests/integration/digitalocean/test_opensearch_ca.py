# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""config_do_opensearch_cluster: the plan reads a managed OpenSearch cluster's project CA over HTTPS from the
DigitalOcean stand-in (GET /v2/databases/{uuid}/ca, databases_get_ca.yml; the stand-in's answers are checked
against the OpenAPI excerpt by test_contract.py) with the collection's real API client, and the rendered Rails
pods name it in ES_CA_FILE (config/initializers/chewy.rb:4-9)."""
from __future__ import annotations

import base64
import os

import yaml

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import plan, variables
from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_the_plan_reads_the_opensearch_ca_from_the_api(do_api):
    specs = variables.load_role_specs(os.path.join(ROOT, 'roles'), yaml.safe_load)
    raw = {'config_local_domain': 'social.example.test', 'config_database_source': 'digitalocean',
           'config_do_database_cluster': 'mastodon-pg', 'config_do_opensearch_cluster': 'mastodon-search',
           'config_media_ephemeral': True, 'config_tls_preflight': False, 'config_kubernetes': False}
    client = DigitalOceanClient(do_api.token, base_url=do_api.base_url, ca_path=do_api.ca_file)
    deploy = plan.Deploy(raw, specs, plan.COMPONENTS, do_client=lambda v: client).plan()
    search = do_api.cluster('mastodon-search')
    assert search['engine'] == 'opensearch'
    assert deploy.model['es_ca_pem'].strip() == do_api.ca_pem('mastodon-search').strip()
    assert deploy.model['ca_pem'].strip() == do_api.ca_pem('mastodon-pg').strip()
    assert do_api.count(r'/v2/databases/%s/ca$' % search['id']) == 1
    secret = [o for o in deploy.manifests['config'] if o['kind'] == 'Secret' and o['metadata']['name'].endswith('-db-ca')]
    assert base64.b64decode(secret[0]['data']['es-ca.crt']).decode().strip() == do_api.ca_pem('mastodon-search').strip()
    for component in ('web', 'sidekiq', 'migrate-pre'):
        container = deploy.manifests[component][0]['spec']['template']['spec']['containers'][0]
        env = dict((e['name'], e['value']) for e in container['env'])
        assert env['ES_CA_FILE'].endswith('/es-ca.crt'), component
