# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A corpus of operator mistakes across all roles (issue 18): each one is rejected by the plan, before anything is
written, by an error that names the variable. The plan runs without a cluster here (config_kubernetes: false,
explicit endpoints): the input checks, the environment, the model and the manifests; the guards and the dry-run
need the cluster and are covered by test__deploy/ and molecule/default.

Mastodon's queues (config/sidekiq.yml): default, push, pull, ingress, mailers, scheduler, fasp.
"""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import errors, plan, variables

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
SPECS = variables.load_role_specs(os.path.join(ROOT, 'roles'), yaml.safe_load)
BASE = {'config_local_domain': 'social.example', 'config_database_source': 'explicit', 'config_db_host': 'db.example',
        'config_db_password': 'pw-0123456789', 'config_redis_url': 'rediss://default:pw@redis.example:25061',
        'config_media_ephemeral': True, 'config_tls_preflight': False, 'config_kubernetes': False}
QUEUES = ['default', 'push', 'pull', 'ingress', 'mailers', 'scheduler', 'fasp']


def group(**kw):
    out = {'name': 'all', 'queues': list(QUEUES)}
    out.update(kw)
    return [out]


MISTAKES = [
    # (id, variables, the variable the error must name)
    ('replicas-word', {'web_replicas': 'two'}, 'web_replicas'),
    ('replicas-negative', {'web_replicas': -1}, 'web_replicas'),
    ('replicas-float', {'streaming_replicas': 1.5}, 'streaming_replicas'),
    ('replicas-bool', {'streaming_replicas': True}, 'streaming_replicas'),
    ('web-replica-typo', {'web_replica': 3}, 'web_replica'),
    ('streaming-typo', {'streaming_replica': 3}, 'streaming_replica'),
    ('sidekiq-var-typo', {'sidekiq_worker': group()}, 'sidekiq_worker'),
    ('config-var-typo', {'config_local_domian': 'x.example'}, 'config_local_domian'),
    ('migrations-var-typo', {'migrations_timeout': 5}, 'migrations_timeout'),
    ('concurrency-zero-threads', {'web_max_threads': 0}, 'web_max_threads'),
    ('concurrency-word', {'web_concurrency': 'many'}, 'web_concurrency'),
    ('exposure-typo', {'web_exposure': 'ingres'}, 'web_exposure'),
    ('streaming-exposure-typo', {'streaming_exposure': 'route'}, 'streaming_exposure'),
    ('httproute-no-parents', {'web_exposure': 'httproute'}, 'web_gateway_parent_refs'),
    ('hpa-min-zero', {'web_hpa_enabled': True, 'web_hpa_min_replicas': 0}, 'web_hpa_min_replicas'),
    ('hpa-max-below-min', {'web_hpa_enabled': True, 'web_hpa_min_replicas': 4, 'web_hpa_max_replicas': 2},
     'web_hpa_max_replicas'),
    ('hpa-cpu-200', {'web_hpa_enabled': True, 'web_hpa_cpu_utilization': 200}, 'web_hpa_cpu_utilization'),
    ('hpa-enabled-word', {'web_hpa_enabled': 'sure'}, 'web_hpa_enabled'),
    ('pdb-negative', {'web_pdb_min_available': -1}, 'web_pdb_min_available'),
    ('cpu-with-space', {'web_resources': {'requests': {'cpu': '250 m'}}}, 'web_resources'),
    ('memory-gb', {'web_resources': {'limits': {'memory': '1GB'}}}, 'web_resources'),
    ('memory-word', {'streaming_resources': {'limits': {'memory': 'lots'}}}, 'streaming_resources'),
    ('resources-typo', {'web_resources': {'request': {'cpu': '1'}}}, 'web_resources'),
    ('requests-above-limits', {'web_resources': {'requests': {'memory': '2Gi'}, 'limits': {'memory': '1Gi'}}},
     'web_resources'),
    ('resources-list', {'web_resources': ['cpu']}, 'web_resources'),
    ('sidekiq-resources', {'sidekiq_resources': {'requests': {'cpu': 'half'}}}, 'sidekiq_resources'),
    ('migrations-resources', {'migrations_resources': {'limits': {'memory': '1.5 Gi'}}}, 'migrations_resources'),
    ('strategy-type', {'web_strategy': {'type': 'Rolling'}}, 'web_strategy'),
    ('strategy-recreate-rolling', {'web_strategy': {'type': 'Recreate', 'rollingUpdate': {'maxSurge': 1}}},
     'web_strategy'),
    ('strategy-key-typo', {'web_strategy': {'type': 'RollingUpdate', 'rollingUpdate': {'maxUnavailble': 0}}},
     'web_strategy'),
    ('strategy-both-zero', {'web_strategy': {'type': 'RollingUpdate',
                                             'rollingUpdate': {'maxSurge': 0, 'maxUnavailable': 0}}}, 'web_strategy'),
    ('strategy-word', {'web_strategy': {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': 'half'}}},
     'web_strategy'),
    ('node-selector-bool', {'web_node_selector': {'dedicated': True}}, 'web_node_selector'),
    ('node-selector-int', {'sidekiq_node_selector': {'pool': 2}}, 'sidekiq_node_selector'),
    ('node-selector-key', {'streaming_node_selector': {'bad key!': 'x'}}, 'streaming_node_selector'),
    ('tolerations-key', {'web_tolerations': [{'key': 'a', 'efect': 'NoSchedule'}]}, 'web_tolerations'),
    ('tolerations-operator', {'migrations_tolerations': [{'key': 'a', 'operator': 'In'}]}, 'migrations_tolerations'),
    ('cdn-with-scheme', {'config_cdn_host': 'https://cdn.example'}, 'config_cdn_host'),
    ('cdn-with-path', {'config_cdn_host': 'cdn.example/assets'}, 'config_cdn_host'),
    ('streaming-host-url', {'config_streaming_host': 'wss://streaming.example'}, 'config_streaming_host'),
    ('web-domain-upper', {'config_web_domain': 'Social.Example'}, 'config_web_domain'),
    ('local-domain-underscore', {'config_local_domain': 'my_social.example'}, 'config_local_domain'),
    ('name-too-long', {'config_name': 'a' * 31}, 'config_name'),
    ('name-upper', {'config_name': 'Mastodon'}, 'config_name'),
    ('namespace-bad', {'config_namespace': 'my_namespace'}, 'config_namespace'),
    ('version-garbage', {'config_mastodon_version': 'latest'}, 'config_mastodon_version'),
    ('version-old-line', {'config_mastodon_version': 'v4.2.10'}, 'config_mastodon_version'),
    ('version-float', {'config_mastodon_version': 4.6}, 'config_mastodon_version'),
    ('pull-policy', {'config_image_pull_policy': 'always'}, 'config_image_pull_policy'),
    ('pull-secrets-string', {'config_image_pull_secrets': 'regcred'}, 'config_image_pull_secrets'),
    ('db-port-word', {'config_db_port': 'five'}, 'config_db_port'),
    ('db-port-range', {'config_db_port': 70000}, 'config_db_port'),
    ('db-host-missing', {'config_db_host': ''}, 'config_db_host'),
    ('do-cluster-missing', {'config_database_source': 'digitalocean'}, 'config_do_database_cluster'),
    ('source-typo', {'config_database_source': 'digital-ocean'}, 'config_database_source'),
    ('redis-url-scheme', {'config_redis_url': 'https://redis.example'}, 'config_redis_url'),
    ('ca-garbage', {'config_db_ca_pem': '-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n'},
     'config_db_ca_pem'),
    ('ca-not-pem', {'config_db_ca_pem': 'not a certificate'}, 'config_db_ca_pem'),
    # Only the armour of a key (no key material): the plan must refuse any PEM private key block.
    ('ca-private-key', {'config_db_ca_pem': '-----BEGIN %s-----\nMIIE\n-----END %s-----\n' % ('PRIVATE KEY', 'PRIVATE KEY')},
     'config_db_ca_pem'),
    ('ca-mount-relative', {'config_ca_mount_dir': 'etc/ca'}, 'config_ca_mount_dir'),
    ('labels-int', {'config_labels': {'team': 7}}, 'config_labels'),
    ('sidekiq-queue-typo', {'sidekiq_workers': group(queues=['default', 'push', 'pull', 'ingress', 'mailer',
                                                             'scheduler', 'fasp'])}, 'sidekiq_workers'),
    ('sidekiq-queue-missing', {'sidekiq_workers': group(queues=['default', 'scheduler'])}, 'sidekiq_workers'),
    ('sidekiq-group-key-typo', {'sidekiq_workers': group(replica=3)}, 'sidekiq_workers'),
    ('sidekiq-replicas-word', {'sidekiq_workers': group(replicas='two')}, 'sidekiq_workers'),
    ('sidekiq-scheduler-two-replicas', {'sidekiq_workers': group(replicas=2)}, 'sidekiq_workers'),
    ('sidekiq-scheduler-twice', {'sidekiq_workers': group() + [{'name': 'b', 'queues': ['scheduler']}]},
     'sidekiq_workers'),
    ('sidekiq-duplicate-names', {'sidekiq_workers': [{'name': 'a', 'queues': QUEUES},
                                                     {'name': 'a', 'queues': ['default']}]}, 'sidekiq_workers'),
    ('sidekiq-concurrency-high', {'sidekiq_workers': group(concurrency=100)}, 'sidekiq_workers'),
    ('sidekiq-weight-word', {'sidekiq_workers': group(queues=['default,high'] + QUEUES[1:])}, 'sidekiq_workers'),
    ('sidekiq-empty', {'sidekiq_workers': []}, 'sidekiq_workers'),
    ('sidekiq-group-name', {'sidekiq_workers': group(name='All Queues')}, 'sidekiq_workers'),
    ('sidekiq-group-selector', {'sidekiq_workers': group(node_selector={'pool': True})}, 'sidekiq_workers'),
    ('sidekiq-max-zero', {'sidekiq_max_concurrency': 0}, 'sidekiq_max_concurrency'),
    ('wait-timeout-zero', {'web_wait_timeout': 0}, 'web_wait_timeout'),
    ('deadline-zero', {'migrations_active_deadline_seconds': 0}, 'migrations_active_deadline_seconds'),
    ('migrations-phase', {'migrations_phase': 'before'}, 'migrations_phase'),
    ('env-unknown-key', {'config_env': {'SINGLE_USER': True}}, 'config_env'),
    ('env-bad-bool', {'config_env': {'SINGLE_USER_MODE': 'maybe'}}, 'config_env'),
    ('env-dict-value', {'config_env': {'DEFAULT_LOCALE': {'en': 1}}}, 'config_env'),
    ('env-key-twice', {'config_env': {'DEFAULT_LOCALE': 'en'}, 'config_extra_env': {'DEFAULT_LOCALE': 'de'}},
     'config_env'),
    ('media-without-storage', {'config_media_ephemeral': False}, 'config_media_volume_claim'),
    ('migrations-skip-variable', {'migrations_extra_env': {'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'true'}},
     'migrations_extra_env'),
    ('extra-env-dict', {'web_extra_env': {'A': {'b': 1}}}, 'web_extra_env'),
    ('env-local-domain', {'config_env': {'LOCAL_DOMAIN': 'other.example'}}, 'config_env'),
    ('extra-env-web-domain', {'config_extra_env': {'WEB_DOMAIN': 'www.example'}}, 'config_extra_env'),
    ('web-extra-env-redis-namespace', {'web_extra_env': {'REDIS_NAMESPACE': 'web'}}, 'web_extra_env'),
    ('sidekiq-extra-env-rails-env', {'sidekiq_extra_env': {'RAILS_ENV': 'development'}}, 'sidekiq_extra_env'),
    ('secrets-key-typo', {'config_secrets': {'SECRET_KEY_BAS': 'x' * 128}}, 'config_secrets'),
    ('role-prefix-typo', {'migration_resources': {'limits': {'memory': '1Gi'}}}, 'migration_resources'),
    ('role-prefix-typo-sidekick', {'sidekick_workers': group()}, 'sidekick_workers'),
    ('db-pool-below-threads', {'config_env': {'DB_POOL': 5}, 'web_max_threads': 8}, 'config_env'),
    ('pdb-equals-replicas', {'web_replicas': 2, 'web_pdb_min_available': 2}, 'web_pdb_min_available'),
    ('streaming-pdb-above-replicas', {'streaming_replicas': 1, 'streaming_pdb_min_available': 2},
     'streaming_pdb_min_available'),
    ('db-sslmode-underscore', {'config_db_sslmode': 'verify_full'}, 'config_db_sslmode'),
    ('backup-max-age-without-unit', {'migrations_backup_max_age': '26'}, 'migrations_backup_max_age'),
    ('backup-max-age-int', {'migrations_backup_max_age': 26}, 'migrations_backup_max_age'),
    ('backup-max-age-zero', {'migrations_backup_max_age': '0h'}, 'migrations_backup_max_age'),
    ('backup-confirmed-without-zone', {'migrations_backup_confirmed_at': '2026-12-05 03:00'}, 'migrations_backup_confirmed_at'),
    ('backup-confirmed-yaml-date', {'migrations_backup_confirmed_at': '05/12/2026'}, 'migrations_backup_confirmed_at'),
    ('migrations-post-typo', {'migrations_post': 'later'}, 'migrations_post'),
    ('update-check-url-without-scheme', {'config_update_check_url': 'api.joinmastodon.org/update-check'},
     'config_update_check_url'),
]


@pytest.mark.parametrize('variables,variable', [pytest.param(m[1], m[2], id=m[0]) for m in MISTAKES])
def test_each_mistake_is_rejected_naming_its_variable(variables, variable):
    deploy = plan.Deploy(dict(BASE, **variables), SPECS, plan.COMPONENTS)
    with pytest.raises(errors.PlanError) as info:
        deploy.plan()
    assert variable in info.value.variables, info.value.message()
    assert 'nothing was changed' in info.value.message()


def test_the_corpus_is_large_and_the_base_passes():
    assert len(MISTAKES) >= 60
    plan.Deploy(dict(BASE), SPECS, plan.COMPONENTS).plan()
