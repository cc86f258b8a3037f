# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How the planned pods reach their images and services (_deploy/rules.py connection_rules, _deploy/model.py,
_deploy/endpoints.py, _deploy/preflight.py), read against Mastodon's code (v4.6.5) and DigitalOcean's API:

* ghcr.io/mastodon/mastodon and ghcr.io/mastodon/mastodon-streaming are two images: one digest cannot pin both;
* migrations do not run through PgBouncer; config/database.yml lets DATABASE_URL override the DB_* settings;
* lib/mastodon/redis_configuration.rb:47,60: the Redis client gets only {url:, driver:} (no CA option);
* config/initializers/chewy.rb:4-9: ES_CA_FILE; DigitalOcean serves a managed cluster's CA at
  GET /v2/databases/{uuid}/ca (databases_get_ca.yml), OpenSearch clusters included (engine opensearch,
  models/database_cluster.yml).
"""

from __future__ import annotations

import base64
import datetime

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import endpoints, errors, plan, preflight
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.plan_inputs import BASE, NOW, SPECS

WEB_DIGEST = 'sha256:' + 'a' * 64
STREAMING_DIGEST = 'sha256:' + 'b' * 64


def _ca_pem(name='search CA'):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode('ascii')


def problems(**overrides):
    deploy = plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW)
    try:
        deploy.check_inputs()
    except errors.PlanError as exc:
        return exc.errors
    return []


def planned(**overrides):
    return plan.Deploy(dict(BASE, config_kubernetes=False, **overrides), SPECS, plan.COMPONENTS, now=NOW).plan()


# ------------------------------------------------------------------------------------------------ images
def test_a_version_digest_pins_only_the_main_image():
    model = planned(config_mastodon_version='v4.6.5@' + WEB_DIGEST).model
    assert model['image'] == 'ghcr.io/mastodon/mastodon@' + WEB_DIGEST
    assert model['streaming_image'] == 'ghcr.io/mastodon/mastodon-streaming:v4.6.5'
    deployment = planned(config_mastodon_version='v4.6.5@' + WEB_DIGEST).manifests['streaming'][0]
    assert deployment['spec']['template']['spec']['containers'][0]['image'] == \
        'ghcr.io/mastodon/mastodon-streaming:v4.6.5'


def test_the_streaming_digest_pins_the_streaming_image_and_the_tls_check_job():
    model = planned(config_mastodon_version='v4.6.5@' + WEB_DIGEST, config_streaming_image_digest=STREAMING_DIGEST).model
    assert model['image'] == 'ghcr.io/mastodon/mastodon@' + WEB_DIGEST
    assert model['streaming_image'] == 'ghcr.io/mastodon/mastodon-streaming@' + STREAMING_DIGEST
    for v_extra, expected in (({'config_streaming_image_digest': STREAMING_DIGEST},
                               'ghcr.io/mastodon/mastodon-streaming@' + STREAMING_DIGEST),
                              ({}, 'ghcr.io/mastodon/mastodon-streaming:v4.6.5')):
        deploy = planned(config_mastodon_version='v4.6.5@' + WEB_DIGEST, **v_extra)
        seen = []
        preflight.in_cluster_preflight(object(), deploy.v, dict(deploy.model, tls_endpoints=deploy.endpoints),
                                       run_job=lambda client, job: seen.append(job) or {'failed': False, 'msg': None})
        assert seen[0]['spec']['template']['spec']['containers'][0]['image'] == expected


@pytest.mark.parametrize('digest', ['b' * 64, 'sha256:' + 'B' * 64, 'sha256:' + 'b' * 63, 'sha512:' + 'b' * 64])
def test_the_streaming_digest_is_checked(digest):
    (error,) = problems(config_streaming_image_digest=digest)
    assert error.key == 'config_streaming_image_digest' and 'sha256:' in str(error)


# ------------------------------------------------------------------------------------------------ migrations
def test_a_pool_without_a_direct_host_is_refused_naming_it():
    (error,) = problems(config_db_pgbouncer=True)
    assert error.key == 'config_db_direct_host' and 'PgBouncer' in str(error)
    assert problems(config_db_pgbouncer=True, config_db_direct_host='direct.example') == []


@pytest.mark.parametrize('variable', ['config_env', 'config_extra_env', 'migrations_extra_env'])
def test_database_url_is_refused_naming_where_it_was_given(variable):
    (error,) = problems(**{variable: {'DATABASE_URL': 'postgres://u:secret-pw@pool.example:25061/pool'}})
    assert error.key == variable and 'migration Jobs' in str(error)
    assert 'secret-pw' not in str(error)


# ------------------------------------------------------------------------------------------------ trust
def test_a_private_redis_ca_is_refused_for_rails():
    (error,) = problems(config_redis_ca_pem=_ca_pem('redis CA'))
    assert error.key == 'config_redis_ca_pem' and 'redis_configuration.rb' in str(error)
    assert 'BEGIN' not in str(error)


def test_the_es_ca_reaches_the_rails_pods():
    pem = _ca_pem()
    deploy = planned(config_es_ca_pem=pem)
    assert deploy.model['es_ca_pem'] == pem
    container = deploy.manifests['web'][0]['spec']['template']['spec']['containers'][0]
    env = dict((e['name'], e['value']) for e in container['env'])
    assert env['ES_CA_FILE'] == '/etc/mastodon/db-ca/es-ca.crt'


def test_the_es_ca_is_checked_and_es_ca_file_not_set_twice():
    (error,) = problems(config_es_ca_pem='not a certificate')
    assert error.key == 'config_es_ca_pem'
    (error,) = problems(config_es_ca_pem=_ca_pem(), config_env={'ES_CA_FILE': '/elsewhere.crt'})
    assert error.key == 'config_env' and 'ES_CA_FILE' in str(error)
    (error,) = problems(config_do_opensearch_cluster='search')
    assert error.key == 'config_do_opensearch_cluster' and 'digitalocean' in str(error)


class FakeDigitalOcean(object):
    """The API answers the plan reads, shaped as the OpenAPI excerpt (databases_list_clusters, databases_get_ca)."""

    def __init__(self, search_engine='opensearch'):
        conn = {'host': 'h', 'port': 25060, 'user': 'doadmin', 'password': 'admin-pw', 'ssl': True}
        self.cas = {'pg-id': _ca_pem('pg CA'), 'os-id': _ca_pem('opensearch CA')}
        self.clusters = [
            {'id': 'pg-id', 'name': 'pg', 'engine': 'pg', 'connection': conn, 'private_connection': conn},
            {'id': 'os-id', 'name': 'search', 'engine': search_engine, 'connection': conn, 'private_connection': conn}]
        self.ca_requests = []

    def databases(self, tag=None):
        return list(self.clusters)

    def database_pools(self, cluster_id):
        return []

    def database_ca(self, cluster_id):
        self.ca_requests.append(cluster_id)
        return base64.b64encode(self.cas[cluster_id].encode('ascii')).decode('ascii')

    def database_firewall_rules(self, cluster_id):
        return []


def _do_vars(**extra):
    v = {'config_do_private_network': True, 'config_do_database_cluster': 'pg', 'config_do_redis_cluster': '',
         'config_do_use_pool': False, 'config_do_pool': '', 'config_db_name': 'mastodon', 'config_redis_url': '',
         'config_db_ca_pem': '', 'config_kubernetes': False, 'config_do_kubernetes_cluster_id': '',
         'config_es_ca_pem': '', 'config_do_opensearch_cluster': 'search'}
    v.update(extra)
    return v


def test_the_opensearch_ca_is_read_from_the_api_like_the_postgresql_one():
    client = FakeDigitalOcean()
    found = endpoints.do_endpoints(_do_vars(), client)
    assert found['es_ca_pem'].strip() == client.cas['os-id'].strip()
    assert found['ca_pem'].strip() == client.cas['pg-id'].strip()
    assert client.ca_requests == ['pg-id', 'os-id']
    # A CA given by the operator wins, as config_db_ca_pem does.
    given = _ca_pem('given')
    assert endpoints.do_endpoints(_do_vars(config_es_ca_pem=given), FakeDigitalOcean())['es_ca_pem'] == given


def test_the_opensearch_cluster_must_be_opensearch():
    with pytest.raises(errors.PlanError) as caught:
        endpoints.do_endpoints(_do_vars(), FakeDigitalOcean(search_engine='valkey'))
    (error,) = caught.value.errors
    assert error.key == 'config_do_opensearch_cluster' and 'not opensearch' in str(error)
