# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan of mastodon_deploy (_deploy_plan.py): every input checked, all problems at once, each naming its
variable; the kept-secrets and LOCAL_DOMAIN guards; the model of docs/dev/shapes.md section 2.

Mastodon facts: the Sidekiq queues default, push, pull, ingress, mailers, scheduler, fasp (config/sidekiq.yml,
../shared/reference/mastodon/README.md); the generated-once secrets SECRET_KEY_BASE, VAPID_*,
ACTIVE_RECORD_ENCRYPTION_* (config/initializers/active_record_encryption.rb, app/lib/web_push). Kubernetes'
quantity format: k8s.io/apimachinery/pkg/api/resource/quantity.go (splitREString).
"""

from __future__ import annotations

import datetime
import os

import pytest
import yaml

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.module_utils import _deploy_plan as plan
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
SPECS = plan.load_role_specs(os.path.join(ROOT, 'roles'), yaml.safe_load)
NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc)
BASE = {'config_local_domain': 'social.example', 'config_database_source': 'explicit', 'config_db_host': 'db.example',
        'config_db_password': 'pw-0123456789', 'config_redis_url': 'rediss://default:pw@redis.example:25061',
        'config_media_ephemeral': True, 'config_tls_preflight': False}


def problems(**overrides):
    """The ConfigErrors of check_variables + cross_checks for BASE plus overrides (as Deploy.check_inputs)."""
    raw = dict(BASE)
    raw.update(overrides)
    deploy = plan.Deploy(raw, SPECS, plan.COMPONENTS, now=NOW)
    try:
        deploy.check_inputs()
    except plan.PlanError as exc:
        return exc.errors
    return []


def one(**overrides):
    errors = problems(**overrides)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_the_base_variables_pass():
    assert problems() == []


# ------------------------------------------------------------------ strict types
def test_an_int_given_as_a_word_is_an_error_never_zero():
    error = one(web_replicas='two')
    assert error.key == 'web_replicas' and 'must be an integer' in str(error)


def test_digits_from_the_command_line_are_ints_and_yes_is_true():
    deploy = plan.Deploy(dict(BASE, web_replicas='3', web_hpa_enabled='no'), SPECS, plan.COMPONENTS, now=NOW)
    v = deploy.check_inputs()
    assert v['web_replicas'] == 3 and v['web_hpa_enabled'] is False


def test_a_bool_for_an_int_and_a_number_for_a_string_are_errors():
    assert one(streaming_replicas=True).key == 'streaming_replicas'
    error = one(config_db_password=12345)
    assert error.key == 'config_db_password' and '12345' not in str(error)


def test_choices_with_did_you_mean():
    error = one(web_exposure='ingres')
    assert error.key == 'web_exposure' and "did you mean ingress" in str(error)


def test_unknown_role_variable_with_did_you_mean():
    error = one(web_replica=3)
    assert error.key == 'web_replica' and 'did you mean web_replicas' in str(error)


def test_every_problem_is_reported_at_once():
    errors = problems(web_replicas='two', sidekiq_max_concurency=3, config_cdn_host='https://cdn.example',
                      streaming_resources={'requests': {'cpu': 'lots'}})
    assert sorted(e.key for e in errors) == ['config_cdn_host', 'sidekiq_max_concurency', 'streaming_resources',
                                             'web_replicas']


# ------------------------------------------------------------------ cross-role rules
def test_cdn_host_without_scheme():
    assert 'without scheme' in str(one(config_cdn_host='https://cdn.example'))


def test_unsupported_version_and_its_override():
    assert 'Mastodon 4.3 is not a supported line' in str(one(config_mastodon_version='v4.3.9'))
    assert problems(config_mastodon_version='v4.3.9', config_allow_unsupported_version=True) == []
    assert problems(config_mastodon_version='v4.6.5@sha256:' + 'a' * 64) == []


@pytest.mark.parametrize('amount', ['1.5 Gi', 'lots', '1GB', '-'])
def test_quantities_parsed_as_kubernetes_does(amount):
    error = one(web_resources={'requests': {'memory': amount}})
    assert error.key == 'web_resources' and 'requests.memory is not a Kubernetes quantity' in str(error)


@pytest.mark.parametrize('amount', ['250m', '0.5', 1, '768Mi', '1e3', '1Gi', '.5'])
def test_valid_quantities(amount):
    assert problems(web_resources={'requests': {'cpu': amount}}) == []


def test_requests_above_limits():
    error = one(migrations_resources={'requests': {'memory': '2Gi'}, 'limits': {'memory': '1Gi'}})
    assert 'requests.memory is larger than limits.memory' in str(error)


def test_strategy_shape():
    assert 'only allowed with type RollingUpdate' in str(one(web_strategy={'type': 'Recreate', 'rollingUpdate': {}}))
    assert 'did you mean maxSurge' in str(one(web_strategy={'type': 'RollingUpdate',
                                                            'rollingUpdate': {'maxSurg': 1}}))


def test_node_selector_values_must_be_strings():
    error = one(web_node_selector={'dedicated': True})
    assert error.key == 'web_node_selector' and 'quote it' in str(error)


def test_hpa_bounds():
    error = one(web_hpa_enabled=True, web_hpa_min_replicas=5, web_hpa_max_replicas=3)
    assert error.key == 'web_hpa_max_replicas'


def test_ingress_host_must_be_a_dns_name():
    assert one(config_streaming_host='Streaming_Host.example').key == 'config_streaming_host'


def test_httproute_needs_parent_refs():
    assert one(streaming_exposure='httproute').key == 'streaming_gateway_parent_refs'


def _workers(**group):
    out = {'name': 'all', 'queues': ['default', 'push', 'pull', 'ingress', 'mailers', 'scheduler', 'fasp']}
    out.update(group)
    return [out]


def test_unknown_sidekiq_queue_with_did_you_mean():
    workers = _workers(queues=['default', 'push', 'pull', 'ingress', 'mailer', 'scheduler', 'fasp'])
    error = one(sidekiq_workers=workers)
    assert error.key == 'sidekiq_workers' and 'unknown queue mailer (did you mean mailers?)' in str(error)


def test_unknown_sidekiq_group_key_with_did_you_mean():
    assert 'unknown key replica (did you mean replicas?)' in str(one(sidekiq_workers=_workers(replica=3)))


def test_sidekiq_replicas_as_a_word():
    assert 'replicas must be an integer' in str(one(sidekiq_workers=_workers(replicas='two')))


def test_scheduler_in_exactly_one_replica():
    assert 'exactly one replica' in str(one(sidekiq_workers=_workers(replicas=2)))


def test_sidekiq_group_resources_and_selector_checked():
    errors = problems(sidekiq_workers=_workers(resources={'limits': {'memory': '1 Gi'}}, node_selector={'a': 1}))
    assert [e.key for e in errors] == ['sidekiq_workers', 'sidekiq_workers']
    assert 'group all: limits.memory' in str(errors[0]) and 'group all: a must be a string' in str(errors[1])


# ------------------------------------------------------------------ the given CA
def _cert(ca=True, days=30, start=-1):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'project CA')])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW + datetime.timedelta(days=start))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode('ascii')
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode('ascii')
    return pem, key_pem


def test_a_valid_ca_passes():
    assert problems(config_db_ca_pem=_cert()[0]) == []


def test_an_expired_ca():
    assert 'expired' in str(one(config_db_ca_pem=_cert(days=-1, start=-30)[0]))


def test_a_leaf_certificate():
    assert 'CA:TRUE is missing' in str(one(config_db_ca_pem=_cert(ca=False)[0]))


def test_garbage_inside_the_armour_is_not_echoed():
    pem = '-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n'
    error = one(config_db_ca_pem=pem)
    assert error.key == 'config_db_ca_pem' and 'Tm90IGEg' not in str(error)


def test_a_private_key_is_refused_and_never_echoed():
    pem, key_pem = _cert()
    error = one(config_db_ca_pem=pem + key_pem)
    assert 'PRIVATE KEY' in str(error)
    body = key_pem.splitlines()[1]
    assert body not in str(error)


# ------------------------------------------------------------------ guards
KEPT = dict((k, 'old-' + k) for k in plan.KEPT_KEYS)


def _v(**overrides):
    deploy = plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW)
    return deploy.check_inputs()


def test_first_install_generates():
    known, backup = plan.kept_secrets(_v(), {'instance': [], 'kept_exists': False})
    assert known == {} and backup is None


def test_kept_secrets_are_reused():
    known, backup = plan.kept_secrets(_v(), {'instance': ['Secret mastodon-env'], 'kept_exists': True, 'kept': KEPT})
    assert known == KEPT and backup is None


def test_existing_instance_without_kept_secrets_is_refused_before_any_write():
    state = {'instance': ['Secret mastodon-env', 'Deployment mastodon-web'], 'kept_exists': False,
             'env_secret': KEPT}
    with pytest.raises(plan.PlanError) as info:
        plan.kept_secrets(_v(), state)
    text = info.value.message()
    assert 'mastodon-generated-secrets' in text and 'SECRET_KEY_BASE' in text
    assert 'config_restore_kept_secrets_from_env: true' in text and 'config_secrets' in text
    assert 'old-SECRET_KEY_BASE' not in text


def test_restore_from_the_env_secret():
    state = {'instance': ['Secret mastodon-env'], 'kept_exists': False, 'env_secret': dict(KEPT, DB_PASS='x')}
    known, backup = plan.kept_secrets(_v(config_restore_kept_secrets_from_env=True), state)
    assert known == KEPT and backup is None


def test_restore_from_a_backup_through_config_secrets():
    state = {'instance': ['Deployment mastodon-web'], 'kept_exists': False, 'env_secret': {}}
    known, dummy = plan.kept_secrets(_v(config_secrets=KEPT), state)
    assert known == KEPT


def test_rotation_keeps_a_backup():
    state = {'instance': ['Secret mastodon-env'], 'kept_exists': True, 'kept': KEPT}
    known, backup = plan.kept_secrets(_v(config_rotate_kept_secrets=True), state)
    assert known == {} and backup == KEPT
    secret = plan.backup_secret('mastodon', 'social', {}, backup)
    assert secret['metadata']['name'] == 'mastodon-generated-secrets-previous' and set(secret['data']) == set(KEPT)


def test_local_domain_change_is_refused_unless_allowed():
    state = {'env_configmap': {'data': {'LOCAL_DOMAIN': 'old.example'}}, 'env_secret': {}}
    with pytest.raises(plan.PlanError) as info:
        plan.local_domain_guard(_v(), state)
    assert info.value.variables == ['config_local_domain']
    plan.local_domain_guard(_v(config_allow_local_domain_change=True), state)
    plan.local_domain_guard(_v(config_local_domain='old.example'), state)


# ------------------------------------------------------------------ model, TLS preflight, dry-run mapping
def test_plan_without_a_cluster_builds_the_model_of_shapes_section_2():
    deploy = plan.Deploy(dict(BASE, config_kubernetes=False, config_cdn_host='cdn.example'), SPECS, plan.COMPONENTS,
                         now=NOW).plan()
    model = deploy.model
    assert set(model) == {'vars', 'name', 'namespace', 'version', 'image', 'streaming_image', 'labels', 'web_domain',
                          'streaming_host', 'env', 'checksums', 'ca_pem', 'redis_ca_pem', 'kept_secrets', 'db_direct',
                          'sidekiq_groups'}
    assert model['image'] == 'ghcr.io/mastodon/mastodon:v4.6.5'
    assert set(model['kept_secrets']) == set(plan.KEPT_KEYS)
    assert model['env']['rails']['config']['CDN_HOST'] == 'https://cdn.example'
    assert 'SECRET_KEY_BASE' not in model['env']['streaming']['secret']
    assert list(deploy.manifests) == list(plan.COMPONENTS)
    assert 'LOCAL_DOMAIN=' in deploy.files()['env.production']


def test_pinned_digest_image():
    assert plan.image_ref('ghcr.io/mastodon/mastodon', 'v4.6.5@sha256:' + 'b' * 64) == \
        'ghcr.io/mastodon/mastodon@sha256:' + 'b' * 64


def test_tls_preflight_postgres_against_the_ca_and_redis_against_the_system_store():
    calls = []

    def check(**kwargs):
        calls.append(kwargs)
        return {}, 'unknown CA' if kwargs['protocol'] == 'postgres' else None

    endpoints = {'db': {'direct_host': 'direct.db', 'direct_port': 25060, 'host': 'pool.db', 'port': 25061,
                        'pgbouncer': True}, 'redis_url': 'rediss://u:p@redis.db:25061', 'ca_pem': 'CA'}
    errors = plan.tls_preflight(endpoints, check, hostaddr='127.0.0.1')
    assert [str(e) for e in errors] == ['config_tls_preflight: TLS preflight failed: database: unknown CA',
                                        'config_tls_preflight: TLS preflight failed: pool: unknown CA']
    assert [c['ca_pem'] for c in calls] == ['CA', 'CA', None]
    assert all(c['hostaddr'] == '127.0.0.1' for c in calls)


def test_a_dry_run_rejection_names_the_variable():
    origins = {('Deployment', 'mastodon-web', 'spec.template.spec.containers[0].resources'): 'web_resources'}
    applier = plan.ComponentApplier.__new__(plan.ComponentApplier)
    applier.origins, applier.component = origins, 'web'
    applier.rejections = {('apps', 'Deployment', 'social', 'mastodon-web'): {
        'kind': 'Status', 'message': 'invalid', 'details': {'causes': [{
            'field': 'spec.template.spec.containers[0].resources.requests.cpu',
            'message': 'quantities must match the regular expression'}]}}}
    (error,) = applier.rejection_errors()
    assert error.key == 'web_resources'
    assert 'Deployment mastodon-web: spec.template.spec.containers[0].resources.requests.cpu' in str(error)


def test_summary_lists_changes_per_component():
    text = plan.summary_text([('config', {'created': ['Namespace/social'], 'unchanged': ['Secret/x']}),
                              ('web', {})])
    assert 'config       1 created, 1 unchanged' in text and 'created: Namespace/social' in text
    assert 'web          nothing to do' in text
