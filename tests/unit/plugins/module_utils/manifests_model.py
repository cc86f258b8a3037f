# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A model as the planner hands it to _manifests.build (docs/dev/ARCHITECTURE.md section 6), from the roles' real
defaults; shared by the unit tests and the cluster test of the manifests."""

from __future__ import annotations

import os
import sys
import types

import yaml

from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import sidekiq_groups

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
CA = '-----BEGIN CERTIFICATE-----\nMIIBdb\n-----END CERTIFICATE-----\n'
REDIS_CA = '-----BEGIN CERTIFICATE-----\nMIIBredis\n-----END CERTIFICATE-----\n'
MIGRATIONS_MODULE = 'ansible_collections.fediops.mastodon.plugins.module_utils._migrations'


def role_defaults():
    """Every role's defaults plus the new variables of docs/dev/manifests-vars.yml: the variables as typed."""
    out = {}
    for role in ('config', 'web', 'streaming', 'sidekiq', 'migrations'):
        with open(os.path.join(ROOT, 'roles', role, 'defaults', 'main.yml'), encoding='utf-8') as handle:
            out.update(yaml.safe_load(handle))
    with open(os.path.join(ROOT, 'docs', 'dev', 'manifests-vars.yml'), encoding='utf-8') as handle:
        for name, spec in yaml.safe_load(handle).items():
            out[name] = spec['default']
    return out


def use_migrations_stand_in(monkeypatch):
    """The migrations' job_container(phase, extra_env) (plugins/module_utils/_migrations.py, docs/dev/ARCHITECTURE.md section 5)
    when it is there; else a stand-in with its signature and result shape."""
    try:
        __import__(MIGRATIONS_MODULE)
        return
    except ImportError:
        pass
    stub = types.ModuleType(MIGRATIONS_MODULE)

    def job_container(phase, extra_env=None):
        env = {'RAILS_ENV': 'production', 'NODE_ENV': 'production', 'PREPARED_STATEMENTS': 'true', 'DB_POOL': '5',
               'FEDIOPS_MIGRATION_PHASE': phase}
        env.update(extra_env or {})
        return {'command': ['/bin/sh', '-c', 'exec bundle exec rails db:migrate # ' + phase], 'env': env}

    stub.job_container = job_container
    monkeypatch.setitem(sys.modules, MIGRATIONS_MODULE, stub)
    monkeypatch.setattr(sys.modules[MIGRATIONS_MODULE.rsplit('.', 1)[0]], '_migrations', stub, raising=False)


def make_model(namespace='social', **vars_):
    variables = role_defaults()
    variables.update(vars_)
    groups = sidekiq_groups(variables['sidekiq_workers'], {
        'resources': variables['sidekiq_resources'], 'node_selector': variables['sidekiq_node_selector'],
        'tolerations': variables['sidekiq_tolerations'], 'max_concurrency': variables['sidekiq_max_concurrency']})
    return {
        'vars': variables, 'name': 'masto', 'namespace': namespace, 'version': 'v4.6.5',
        'image': 'ghcr.io/mastodon/mastodon:v4.6.5', 'streaming_image': 'ghcr.io/mastodon/mastodon-streaming:v4.6.5',
        'labels': {'app.kubernetes.io/name': 'mastodon', 'app.kubernetes.io/instance': 'masto',
                   'app.kubernetes.io/part-of': 'mastodon', 'app.kubernetes.io/managed-by': 'fediops.mastodon'},
        'web_domain': 'social.example', 'streaming_host': '',
        'env': {'rails': {'config': {'LOCAL_DOMAIN': 'social.example', 'DB_HOST': 'pool.db', 'DB_USER': 'mastodon'},
                          'secret': {'DB_PASS': 'pw-rails', 'SECRET_KEY_BASE': 'skb'}},
                'streaming': {'config': {'LOCAL_DOMAIN': 'social.example', 'DB_HOST': 'pool.db'},
                              'secret': {'DB_PASS': 'pw-rails'}}},
        'checksums': {'rails': 'a' * 64, 'streaming': 'b' * 64},
        'ca_pem': CA, 'redis_ca_pem': '',
        'kept_secrets': {'SECRET_KEY_BASE': 'skb', 'VAPID_PRIVATE_KEY': 'vp'},
        'db_direct': {'DB_HOST': 'direct.db', 'DB_PORT': '25060', 'DB_NAME': 'mastodon', 'DB_USER': 'mastodon',
                      'DB_PASS': 'pw-app'},
        'sidekiq_groups': groups,
    }
