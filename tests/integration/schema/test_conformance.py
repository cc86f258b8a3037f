# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The settings schema held against Mastodon's own code, release by release.

shared/reference/mastodon/env-reads-<version>.json lists every environment variable that Mastodon's Ruby app
(config/, lib/, app/) and streaming server (streaming/) read at v4.5.15 and v4.6.5, with file:line. Names that
lib/mastodon/redis_configuration.rb:37-44 builds from a prefix (none, CACHE_, SIDEKIQ_) are not found by such a
scan and are added here, as the reference README says.
"""
from __future__ import annotations

import re

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as config

VERSIONS = sorted(config.SUPPORTED_LINES.values())
# Rails' Redis names, built from a prefix (lib/mastodon/redis_configuration.rb:37-44).
REDIS_BUILT = set(prefix + name for prefix in config.REDIS_PREFIXES for name in config.REDIS_PREFIXED)
# Own keys and who reads them instead of Mastodon's code; the component each one belongs to.
OWN_COMPONENTS = {'SECRET_KEY_BASE': config._RAILS, 'OTP_SECRET': config._RAILS, 'PGSSLROOTCERT': config._RAILS,
                  'NODE_EXTRA_CA_CERTS': (config.STREAMING,)}
# Rejected although read: Mastodon reads them only to refuse them or to skip the post-deployment migrations.
READ_TO_REFUSE = {'REDIS_NAMESPACE': 'config/initializers/deprecations.rb:3',
                  'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'lib/mastodon/database.rb:31'}
RAILS_SECRETS = ('SECRET_KEY_BASE', 'OTP_SECRET', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'SMTP_PASSWORD',
                 'BULK_SMTP_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY',
                 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT')


def _read_by_streaming(reads):
    return set(k for k, places in reads.items() if any(p.startswith('streaming/') for p in places))


def _read_by_rails(reads):
    return set(k for k, places in reads.items() if any(not p.startswith('streaming/') for p in places)) | REDIS_BUILT


@pytest.mark.parametrize('version', VERSIONS)
def test_every_accepted_key_is_read_by_that_release(env_reads, conformance_summary, version):
    """0 keys accepted that Mastodon does not read, except the documented OWN_KEYS."""
    reads = env_reads[version]
    accepted = config.accepted_keys(version)
    read = accepted & (set(reads) | REDIS_BUILT)
    own = accepted - read
    assert own == set(config.OWN_KEYS), 'accepted but not read by Mastodon %s: %s' % (
        version, ', '.join(sorted(own - set(config.OWN_KEYS))))
    for key in config.OWN_KEYS:
        assert key not in reads and len(config.OWN_KEYS[key]) > 20
    rejected = (set(config.REJECTED) | set(config.FORBIDDEN) | (set(config.SCHEMA) - accepted))
    assert not rejected & accepted
    conformance_summary.append(
        '%s: %d keys accepted, %d read by Mastodon %s, %d own documented keys (%s), %d rejected (%s), '
        '0 accepted that Mastodon does not read' % (version, len(accepted), len(read), version, len(own),
                                                    ', '.join(sorted(own)), len(rejected), ', '.join(sorted(rejected))))


@pytest.mark.parametrize('version', VERSIONS)
def test_rejected_keys_are_not_read_or_read_to_refuse(env_reads, version):
    """deprecations.rb:3-17 aborts on REDIS_NAMESPACE; database.rb:31 skips on any SKIP_POST_DEPLOYMENT_MIGRATIONS;
    every other rejected key is read nowhere in that release."""
    reads = env_reads[version]
    for key in config.REJECTED:
        if key in READ_TO_REFUSE:
            assert READ_TO_REFUSE[key] in reads[key], key
        else:
            assert key not in reads and key not in REDIS_BUILT, '%s is read by Mastodon %s' % (key, version)
        errors, dummy = config.validate({key: 'x'}, version=version)
        assert [e for e in errors if e.key == key and 'Mastodon %s' % version[1:4] in e.reason], key


def test_keys_of_one_line_match_the_releases(env_reads):
    """Names only in 4.5.15 or only in 4.6.5: accepted for that line alone (or not at all)."""
    old, new = env_reads['v4.5.15'], env_reads['v4.6.5']
    for key, setting in config.SCHEMA.items():
        in_old = key in old or key in REDIS_BUILT or key in config.OWN_KEYS
        in_new = key in new or key in REDIS_BUILT or key in config.OWN_KEYS
        expected = tuple(line for line, present in (('4.5', in_old), ('4.6', in_new)) if present)
        assert (setting.lines or ('4.5', '4.6')) == expected, key


@pytest.mark.parametrize('version', VERSIONS)
def test_components_follow_where_the_key_is_read(env_reads, version):
    """Streaming reads a key iff a file under streaming/ reads it; web/sidekiq iff a Rails file does."""
    reads = env_reads[version]
    streaming, rails = _read_by_streaming(reads), _read_by_rails(reads)
    for key in config.accepted_keys(version):
        components = set(config.SCHEMA[key].components)
        if key in OWN_COMPONENTS:
            assert components == set(OWN_COMPONENTS[key]), key
            continue
        assert (config.STREAMING in components) == (key in streaming), key
        assert bool(components & set(config._RAILS)) == (key in rails), key


@pytest.mark.parametrize('version', VERSIONS)
def test_component_env_subsets(env_reads, conformance_summary, version):
    """component_env: streaming gets exactly what streaming/ reads (plus node's NODE_EXTRA_CA_CERTS), no Rails
    secret; rails gets what config/, lib/, app/ read."""
    reads = env_reads[version]
    env = dict((key, 'x') for key in config.accepted_keys(version))
    streaming = config.component_env(env, 'streaming', version)
    rails = config.component_env(env, 'rails', version)
    assert set(streaming) == (_read_by_streaming(reads) & set(env)) | {'NODE_EXTRA_CA_CERTS'}
    assert not set(streaming) & set(RAILS_SECRETS)
    assert set(rails) == (_read_by_rails(reads) & set(env)) | {'SECRET_KEY_BASE', 'OTP_SECRET', 'PGSSLROOTCERT'}
    conformance_summary.append('%s: streaming reads %d keys: %s' % (version, len(streaming), ', '.join(sorted(streaming))))


@pytest.mark.parametrize('version', VERSIONS)
def test_locales_match_the_line_of_default_locale(env_reads, version):
    """config/initializers/i18n.rb: the locale list starts at line 5, and DEFAULT_LOCALE is read 3 lines after
    its end, so the line of that read gives the number of locales of the release."""
    places = [p for p in env_reads[version]['DEFAULT_LOCALE'] if p.startswith('config/initializers/i18n.rb:')]
    assert len(places) == 1
    line = int(places[0].rsplit(':', 1)[1])
    locales = config.LOCALES[config.parse_version(version)[1]]
    assert line == 8 + len(locales) and len(set(locales)) == len(locales)
    assert {'be', 'ckb', 'ia'} <= set(locales)


def test_log_level_is_read_by_streaming_logging(env_reads):
    """streaming/logging.js:107-108 reads LOG_LEVEL (pino); nothing under config/, lib/, app/ does."""
    for version in VERSIONS:
        assert set(env_reads[version]['LOG_LEVEL']) == {'streaming/logging.js:107', 'streaming/logging.js:108'}
        assert config.SCHEMA['LOG_LEVEL'].choices == config.PINO_LEVELS


def test_redis_names_built_from_a_prefix_are_read_by_the_builder(env_reads):
    """The builder reads REDIS_DRIVER from the same file: it is there in both releases."""
    for version in VERSIONS:
        assert any(re.match(r'lib/mastodon/redis_configuration\.rb:\d+', p) for p in env_reads[version]['REDIS_DRIVER'])
