# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan of mastodon_deploy (_deploy/): every input checked, all problems at once, each naming its
variable; the kept-secrets and LOCAL_DOMAIN guards; the model of docs/dev/ARCHITECTURE.md section 2.

Mastodon facts: the Sidekiq queues default, push, pull, ingress, mailers, scheduler, fasp (config/sidekiq.yml,
tests/data/mastodon/FACTS.md); the generated-once secrets SECRET_KEY_BASE, VAPID_*,
ACTIVE_RECORD_ENCRYPTION_* (config/initializers/active_record_encryption.rb, app/lib/web_push). Kubernetes'
quantity format: k8s.io/apimachinery/pkg/api/resource/quantity.go (splitREString).
"""

from __future__ import annotations

import datetime
import json

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.module_utils import _digitalocean
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import applier, endpoints, errors, guards, model, plan, preflight, variables
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.plan_inputs import BASE, NOW, SPECS


def problems(**overrides):
    """The ConfigErrors of check_variables + cross_checks for BASE plus overrides (as Deploy.check_inputs)."""
    raw = dict(BASE)
    raw.update(overrides)
    deploy = plan.Deploy(raw, SPECS, plan.COMPONENTS, now=NOW)
    try:
        deploy.check_inputs()
    except errors.PlanError as exc:
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


# ------------------------------------------------------------------ mistakes found by tests/integration/mistakes
@pytest.mark.parametrize('variable', ['config_env', 'config_extra_env'])
@pytest.mark.parametrize('key,owner', [('LOCAL_DOMAIN', 'config_local_domain'), ('WEB_DOMAIN', 'config_web_domain')])
def test_the_domains_are_set_only_through_their_variables(variable, key, owner):
    """config_env: {LOCAL_DOMAIN: ...} would override config_local_domain in base_env and so bypass the
    LOCAL_DOMAIN guard, which compares the running instance's LOCAL_DOMAIN with config_local_domain."""
    error = one(**{variable: {key: 'other.example'}})
    assert error.key == variable and key in str(error) and 'set %s instead' % owner in str(error)


@pytest.mark.parametrize('variable', ['config_env', 'config_extra_env'])
@pytest.mark.parametrize('key,owner', [('WEB_CONCURRENCY', 'web_concurrency'), ('MAX_THREADS', 'web_max_threads')])
def test_puma_settings_are_set_only_through_their_variables(variable, key, owner):
    """The web containers set WEB_CONCURRENCY and MAX_THREADS (config/puma.rb:5,15) from web_concurrency and
    web_max_threads, over config_env: a value there was silently overridden. Refused, naming the variable."""
    error = one(**{variable: {key: '4'}})
    assert error.key == variable and str(error).startswith('%s: %s: set %s instead' % (variable, key, owner))
    error = one(web_extra_env={key: '4'})
    assert error.key == 'web_extra_env' and 'set %s instead' % owner in str(error)
    # Sidekiq's containers do not set them: its extra_env may (sidekiq reads MAX_THREADS for its Redis pool).
    assert problems(sidekiq_extra_env={key: '4'}) == []


def test_keys_a_container_sets_for_one_component_stay_allowed():
    """DB_POOL and DB_SSLMODE of config_env are what web (and streaming for DB_POOL) read; the sidekiq groups and
    the streaming containers set their own (CONTAINER_SET_KEYS documents why)."""
    assert problems(config_env={'DB_POOL': 10, 'DB_SSLMODE': 'require'}) == []


@pytest.mark.parametrize('role', ['web', 'streaming', 'sidekiq', 'migrations'])
def test_the_roles_extra_env_gets_the_schemas_refusals(role):
    """REDIS_NAMESPACE aborts Mastodon 4.4+ at boot (config/initializers/deprecations.rb), whichever env sets it."""
    error = one(**{role + '_extra_env': {'REDIS_NAMESPACE': 'web'}})
    assert error.key == role + '_extra_env' and str(error).startswith('%s_extra_env: REDIS_NAMESPACE: ' % role)
    error = one(**{role + '_extra_env': {'PORT': '3001'}})
    assert error.key == role + '_extra_env' and str(error).startswith('%s_extra_env: PORT: ' % role)
    assert problems(**{role + '_extra_env': {'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://otel:4318'}}) == []


def test_unknown_config_secrets_key_with_did_you_mean():
    error = one(config_secrets={'SECRET_KEY_BAS': 'x' * 128})
    assert error.key == 'config_secrets' and 'did you mean SECRET_KEY_BASE?' in str(error)
    assert 'x' * 16 not in str(error)
    assert problems(config_secrets={'SECRET_KEY_BASE': 'x' * 128, 'OTP_SECRET': 'y' * 128}) == []


@pytest.mark.parametrize('name,meant', [('migration_resources', 'migrations_resources'),
                                        ('sidekick_workers', 'sidekiq_workers'), ('webs_replicas', 'web_replicas')])
def test_a_misspelt_role_prefix_is_flagged(name, meant):
    error = one(**{name: 'x'})
    assert error.key == name and 'did you mean %s?' % meant in str(error)
    known = set(n for options in SPECS.values() for n in options)
    assert variables.misspelt_role_variable(name, SPECS, known) == meant  # the action passes it on (value None)
    assert one(**{name: None}).key == name


@pytest.mark.parametrize('name', ['migration_plan', 'sidekick_mode', 'website_url', 'webhook_url', 'ansible_host',
                                  'configuration_file', 'stream_name'])
def test_other_play_variables_are_left_alone(name):
    assert problems(**{name: 'x'}) == []
    assert variables.misspelt_role_variable(name, SPECS, set(n for options in SPECS.values() for n in options)) is None


def test_db_pool_below_the_web_threads_is_refused():
    """Mastodon's config/database.yml: pool: ENV['DB_POOL'] || ENV['MAX_THREADS'] || 5; Puma runs web_max_threads
    threads per process, each needing a connection. Sidekiq's Deployments set DB_POOL per group themselves."""
    error = one(config_env={'DB_POOL': 5}, web_max_threads=8)
    assert error.key == 'config_env' and 'DB_POOL (5) is lower than web_max_threads (8)' in str(error)
    assert problems(config_env={'DB_POOL': 8}, web_max_threads=8) == []


@pytest.mark.parametrize('role', ['web', 'streaming'])
def test_a_pdb_that_admits_no_eviction_is_refused(role):
    error = one(**{role + '_replicas': 2, role + '_pdb_min_available': 2})
    assert error.key == role + '_pdb_min_available' and 'drains' in str(error)
    assert problems(**{role + '_replicas': 3, role + '_pdb_min_available': 2}) == []
    assert problems(**{role + '_replicas': 2, role + '_pdb_min_available': 2, role + '_pdb_enabled': False}) == []
    assert problems(**{role + '_replicas': 0}) == []


def test_the_pdb_rule_leaves_the_autoscaled_web_alone():
    assert problems(web_replicas=1, web_pdb_min_available=1, web_hpa_enabled=True) == []


def test_db_sslmode_is_checked_by_its_argument_spec():
    error = one(config_db_sslmode='verify_full')
    assert error.key == 'config_db_sslmode' and 'did you mean verify-full?' in str(error)


def test_type_errors_name_the_base_type_not_ansibles_classes():
    """ansible-core 2.19 hands loaded and templated values over as tagged subclasses of the base types
    (ansible/module_utils/_internal/_datatag/__init__.py: _AnsibleTaggedStr(str, AnsibleTaggedObject), ...);
    any tag makes one (the loader's is Origin, not importable under ansible-test units)."""
    from ansible.module_utils._internal._datatag._tags import Deprecated
    tag = Deprecated(msg='a tag').tag
    assert type(tag('two')).__name__ == '_AnsibleTaggedStr'
    error = one(web_replicas=tag('two'))
    assert str(error) == 'web_replicas: must be an integer, got a string'
    assert 'got a mapping' in str(one(web_replicas=tag({'a': 1})))
    assert 'got a list' in str(one(web_replicas=tag([1])))
    assert 'got a number (quote it)' in str(one(config_db_password=tag(1.5)))


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
KEPT = dict((k, 'old-' + k) for k in guards.KEPT_KEYS)


def _v(**overrides):
    deploy = plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW)
    return deploy.check_inputs()


def test_first_install_generates():
    known, backup = guards.kept_secrets(_v(), {'instance': [], 'kept_exists': False})
    assert known == {} and backup is None


def test_kept_secrets_are_reused():
    known, backup = guards.kept_secrets(_v(), {'instance': ['Secret mastodon-env'], 'kept_exists': True, 'kept': KEPT})
    assert known == KEPT and backup is None


def test_existing_instance_without_kept_secrets_is_refused_before_any_write():
    state = {'instance': ['Secret mastodon-env', 'Deployment mastodon-web'], 'kept_exists': False,
             'env_secret': KEPT}
    with pytest.raises(errors.PlanError) as info:
        guards.kept_secrets(_v(), state)
    text = info.value.message()
    assert 'mastodon-generated-secrets' in text and 'SECRET_KEY_BASE' in text
    assert 'config_restore_kept_secrets_from_env: true' in text and 'config_secrets' in text
    assert 'old-SECRET_KEY_BASE' not in text


def test_restore_from_the_env_secret():
    state = {'instance': ['Secret mastodon-env'], 'kept_exists': False, 'env_secret': dict(KEPT, DB_PASS='x')}
    known, backup = guards.kept_secrets(_v(config_restore_kept_secrets_from_env=True), state)
    assert known == KEPT and backup is None


def test_restore_from_a_backup_through_config_secrets():
    state = {'instance': ['Deployment mastodon-web'], 'kept_exists': False, 'env_secret': {}}
    known, dummy = guards.kept_secrets(_v(config_secrets=KEPT), state)
    assert known == KEPT


def test_rotation_keeps_a_backup():
    state = {'instance': ['Secret mastodon-env'], 'kept_exists': True, 'kept': KEPT}
    known, backup = guards.kept_secrets(_v(config_rotate_kept_secrets=True), state)
    assert known == dict((k, KEPT[k]) for k in guards.ENCRYPTION_KEYS) and backup == KEPT
    secret = guards.backup_secret('mastodon', 'social', {}, backup, 'mastodon-generated-secrets-previous-1')
    assert secret['metadata']['name'] == 'mastodon-generated-secrets-previous-1' and set(secret['data']) == set(KEPT)


def test_local_domain_change_is_refused_unless_allowed():
    state = {'env_configmap': {'data': {'LOCAL_DOMAIN': 'old.example'}}, 'env_secret': {}}
    with pytest.raises(errors.PlanError) as info:
        guards.local_domain_guard(_v(), state)
    assert info.value.variables == ['config_local_domain']
    guards.local_domain_guard(_v(config_allow_local_domain_change=True), state)
    guards.local_domain_guard(_v(config_local_domain='old.example'), state)


# ------------------------------------------------------------------ model, TLS preflight, dry-run mapping
def test_plan_without_a_cluster_builds_the_model():
    deploy = plan.Deploy(dict(BASE, config_kubernetes=False, config_cdn_host='cdn.example'), SPECS, plan.COMPONENTS,
                         now=NOW).plan()
    model = deploy.model
    assert set(model) == {'vars', 'name', 'namespace', 'version', 'image', 'streaming_image', 'labels', 'web_domain',
                          'streaming_host', 'env', 'checksums', 'ca_pem', 'redis_ca_pem', 'es_ca_pem', 'kept_secrets', 'db_direct',
                          'sidekiq_groups', 'fresh_secrets', 'encryption_keys_replaced', 'kept_secrets_annotations'}
    assert model['image'] == 'ghcr.io/mastodon/mastodon:v4.7.6'  # the default version
    assert set(model['kept_secrets']) == set(guards.KEPT_KEYS)
    assert model['env']['rails']['config']['CDN_HOST'] == 'https://cdn.example'
    assert 'SECRET_KEY_BASE' not in model['env']['streaming']['secret']
    assert list(deploy.manifests) == list(plan.COMPONENTS)
    assert 'LOCAL_DOMAIN=' in deploy.files()['env.production']


def test_pinned_digest_image():
    assert model.image_ref('ghcr.io/mastodon/mastodon', 'v4.6.5@sha256:' + 'b' * 64) == \
        'ghcr.io/mastodon/mastodon@sha256:' + 'b' * 64


def test_tls_preflight_postgres_against_the_ca_and_redis_against_the_system_store():
    calls = []

    def check(**kwargs):
        calls.append(kwargs)
        return {}, 'unknown CA' if kwargs['protocol'] == 'postgres' else None

    endpoints = {'db': {'direct_host': 'direct.db', 'direct_port': 25060, 'host': 'pool.db', 'port': 25061,
                        'pgbouncer': True}, 'redis_url': 'rediss://u:p@redis.db:25061', 'ca_pem': 'CA'}
    errors = preflight.tls_preflight(endpoints, check, hostaddr='127.0.0.1')
    assert [str(e) for e in errors] == ['config_tls_preflight: TLS preflight failed: database: unknown CA',
                                        'config_tls_preflight: TLS preflight failed: pool: unknown CA']
    assert [c['ca_pem'] for c in calls] == ['CA', 'CA', None]
    assert all(c['hostaddr'] == '127.0.0.1' for c in calls)


def test_a_dry_run_rejection_names_the_variable():
    origins = {('Deployment', 'mastodon-web', 'spec.template.spec.containers[0].resources'): 'web_resources'}
    one_applier = applier.ComponentApplier.__new__(applier.ComponentApplier)
    one_applier.origins, one_applier.component = origins, 'web'
    one_applier.rejections = {('apps', 'Deployment', 'social', 'mastodon-web'): {
        'kind': 'Status', 'message': 'invalid', 'details': {'causes': [{
            'field': 'spec.template.spec.containers[0].resources.requests.cpu',
            'message': 'quantities must match the regular expression'}]}}}
    (error,) = one_applier.rejection_errors()
    assert error.key == 'web_resources'
    assert 'Deployment mastodon-web: spec.template.spec.containers[0].resources.requests.cpu' in str(error)


def test_summary_lists_changes_per_component():
    text = applier.summary_text([('config', {'created': ['Namespace/social'], 'unchanged': ['Secret/x']}),
                                 ('web', {})])
    assert 'config       1 created, 1 unchanged' in text and 'created: Namespace/social' in text
    assert 'web          nothing to do' in text


class FakeDigitalOcean(object):
    """The answers of the DigitalOcean API the plan reads (shapes as the OpenAPI excerpt: databases_get_cluster,
    databases_list_firewall_rules)."""

    K8S_ID = 'bd5f5959-5e1e-4205-a714-a914373942af'

    def __init__(self, rules, redis_engine='valkey'):
        conn = {'host': 'h', 'port': 25060, 'user': 'doadmin', 'password': 'admin-pw', 'ssl': True}
        self.clusters = [
            {'id': 'pg-id', 'name': 'pg', 'engine': 'pg', 'connection': conn, 'private_connection': conn},
            {'id': 'kv-id', 'name': 'kv', 'engine': redis_engine,
             'private_connection': {'host': 'r', 'port': 25061, 'user': 'default', 'password': 'kv-pw', 'ssl': True}}]
        self.rules = rules

    def get_paginated(self, path, key, params=None, what=None):
        return list(self.clusters)

    def databases(self, tag=None):
        return list(self.clusters)

    def database_pools(self, cluster_id):
        return []

    def database_firewall_rules(self, cluster_id):
        return self.rules.get(cluster_id, [])

    def database_ca(self, cluster_id):  # asked at the same time as the pools: a plan that fails on those reads no CA
        raise _digitalocean.DigitalOceanError('DigitalOcean API get CA of database cluster %s failed: HTTP 404 not_found'
                                              % cluster_id, status=404)


def _do_vars(**extra):
    v = {'config_do_private_network': True, 'config_do_database_cluster': 'pg', 'config_do_redis_cluster': 'kv',
         'config_do_use_pool': False, 'config_do_pool': '', 'config_db_name': 'mastodon', 'config_redis_url': '',
         'config_db_ca_pem': 'CA', 'config_kubernetes': True, 'config_do_kubernetes_cluster_id': ''}
    v.update(extra)
    return v


def test_a_database_that_does_not_admit_the_cluster_is_refused_naming_it():
    """DigitalOcean facts (reference README): a database whose trusted sources omit the cluster refuses the pods."""
    client = FakeDigitalOcean({'pg-id': [{'type': 'ip_addr', 'value': '203.0.113.7', 'cluster_uuid': 'pg-id'}]})
    with pytest.raises(errors.PlanError) as caught:
        endpoints.do_endpoints(_do_vars(config_do_kubernetes_cluster_id=client.K8S_ID), client)
    error = caught.value.errors[0]
    assert error.key == 'config_do_database_cluster'
    assert "'pg' does not admit the Kubernetes cluster" in str(error)
    assert 'doctl databases firewalls append pg-id --rule k8s:' + client.K8S_ID in str(error)


def test_a_database_that_admits_the_cluster_passes_and_an_unknown_cluster_only_warns():
    rules = {'pg-id': [{'type': 'k8s', 'value': FakeDigitalOcean.K8S_ID}]}
    found = endpoints.do_endpoints(_do_vars(config_do_kubernetes_cluster_id=FakeDigitalOcean.K8S_ID),
                                   FakeDigitalOcean(rules))
    assert found['warnings'] == [] and found['redis_url'] == 'rediss://default:kv-pw@r:25061'
    # The id comes from a DOKS kubeconfig's server URL too.
    found = endpoints.do_endpoints(_do_vars(), FakeDigitalOcean(rules),
                                   'https://%s.k8s.ondigitalocean.com' % FakeDigitalOcean.K8S_ID)
    assert found['warnings'] == []
    # Not DOKS (the id is unknown): the plan cannot judge, so it warns.
    found = endpoints.do_endpoints(_do_vars(), FakeDigitalOcean(rules), 'https://127.0.0.1:6443')
    assert len(found['warnings']) == 1 and 'config_do_kubernetes_cluster_id' in found['warnings'][0]


def test_the_redis_cluster_must_be_valkey_or_redis():
    with pytest.raises(errors.PlanError) as caught:
        endpoints.do_endpoints(_do_vars(config_do_redis_cluster='pg'), FakeDigitalOcean({}))
    assert caught.value.errors[0].key == 'config_do_redis_cluster'
    assert 'not Valkey or Redis' in str(caught.value.errors[0])
    # A legacy Redis cluster is one.
    found = endpoints.do_endpoints(_do_vars(), FakeDigitalOcean({}, redis_engine='redis'))
    assert found['redis_url'].startswith('rediss://')


def test_tls_preflight_trust_per_endpoint_and_unreachable_endpoints_explained():
    calls = []

    def check(**kwargs):
        calls.append(kwargs)
        return {'error_kind': 'connection_refused'}, 'connection refused by %s' % kwargs['host']

    endpoints = {'db': {'direct_host': 'direct.db', 'direct_port': 25060, 'host': 'pool.db', 'port': 25061,
                        'pgbouncer': False}, 'redis_url': 'rediss://u:p#w@redis.db:25061', 'ca_pem': 'CA'}
    errors = preflight.tls_preflight(endpoints, check, redis_ca_pem='REDIS-CA')
    assert [(c['host'], c['trust'], c['ca_pem']) for c in calls] == [('direct.db', 'ca', 'CA'), ('redis.db', 'ca', 'REDIS-CA')]
    assert len(errors) == 1 and 'cannot reach database, redis' in str(errors[0])
    assert 'in-cluster check' in str(errors[0])


def test_in_cluster_preflight_runs_a_job_with_the_same_trust_and_names_the_variable():
    """When the controller cannot reach the databases (trusted sources), the check runs where the applications
    run: the streaming image's node, the same trust per endpoint, no credential in the Job."""
    seen = []

    def run_job(client, job):
        seen.append(job)
        return {'failed': True, 'msg': 'TLS preflight failed: redis: hostname mismatch | database: unknown CA'}

    v = {'config_name': 'mastodon', 'config_namespace': 'social', 'config_tls_preflight_timeout': 7,
         'config_image_pull_secrets': []}
    model = {'streaming_image': 'ghcr.io/mastodon/mastodon-streaming:v4.6.5', 'labels': {'a': 'b'}, 'redis_ca_pem': '',
             'tls_endpoints': {'db': {'direct_host': 'db.example', 'direct_port': 25060, 'pgbouncer': False},
                               'redis_url': 'rediss://default:s3cret@kv.example:25061', 'ca_pem': _cert()[0]}}
    errors = preflight.in_cluster_preflight(object(), v, model, run_job=run_job)
    assert [e.key for e in errors] == ['config_tls_preflight_in_cluster'] * 2
    assert 'redis: hostname mismatch' in str(errors[0]) and 'database: unknown CA' in str(errors[1])
    job = seen[0]
    container = job['spec']['template']['spec']['containers'][0]
    assert job['metadata']['namespace'] == 'social' and container['image'].endswith('mastodon-streaming:v4.6.5')
    endpoints = dict((e['name'], e) for e in json.loads(container['env'][0]['value']))
    assert endpoints['database']['trust'] == 'ca' and endpoints['redis']['trust'] == 'system'
    assert 's3cret' not in json.dumps(job)
    assert preflight.in_cluster_preflight(object(), v, model, run_job=lambda c, j: {'failed': False, 'msg': None}) == []


# ------------------------------------------------------------------ all problems at once
def test_five_mistakes_in_five_stages_are_reported_in_one_run(monkeypatch):
    """variables, DigitalOcean, guards, environment, manifests (uploads), dry-run: each stage that does not
    depend on a failed one still runs, and one refusal names every variable."""
    state = {'namespace': {'metadata': {'name': 'mastodon'}}, 'kept': {}, 'kept_exists': False, 'env_secret': {},
             'env_secret_exists': False, 'instance': [],
             'env_configmap': {'data': {'LOCAL_DOMAIN': 'old.example'}}, 'web': None, 'marker': None}
    monkeypatch.setattr(plan, 'read_state', lambda client, v: state)
    monkeypatch.setattr(plan, 'read_references', lambda client, v: {})
    dry_ran = []

    def rejecting_plan(self, objects):
        dry_ran.append(self.component)
        if self.component == 'web':
            raise errors.PlanError([ConfigError('web_resources', 'Deployment mastodon-web: rejected')], 'dry-run')
        self.plan_result = {'changed': False, 'objects': [], 'pruned': []}

    monkeypatch.setattr(plan.ComponentApplier, 'plan', rejecting_plan)
    raw = {'config_local_domain': 'new.example', 'config_database_source': 'digitalocean',
           'config_do_database_cluster': 'pg', 'config_do_pool': 'no-such-pool', 'config_do_use_pool': True,
           'config_db_ca_pem': '', 'config_redis_url': 'rediss://default:pw@redis.example:25061',
           'config_tls_preflight': False,
           'web_replicas': 'two',                              # variables
           'config_env': {'SINGLE_USER_MODE': 'perhaps'},      # environment
           'config_media_ephemeral': False}                    # manifests: uploads would be lost
    deploy = plan.Deploy(raw, SPECS, plan.COMPONENTS, kube_client=object, do_client=lambda v: FakeDigitalOcean({}),
                         now=NOW)
    with pytest.raises(errors.PlanError) as caught:
        deploy.plan()
    named = sorted(set(e.key for e in caught.value.errors))
    assert named == ['config_do_pool', 'config_env', 'config_local_domain', 'config_media_volume_claim',
                     'web_replicas', 'web_resources'], [str(e) for e in caught.value.errors]
    assert 'web' in dry_ran and 'sidekiq' in dry_ran
    assert 'nothing was changed' in caught.value.message()
