# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The settings schema held against Mastodon's own code, line by line.

tests/data/mastodon/env-reads-<release>.json lists every environment variable that Mastodon's Ruby app
(config/, lib/, app/) and streaming server (streaming/) read at v4.5.15, v4.6.5 and the 4.7 branch point, with
file:line (tests/data/mastodon/README.md names the commits). Names that lib/mastodon/redis_configuration.rb
builds from a prefix (none, CACHE_, SIDEKIQ_) appear there as their suffix only; they are rebuilt here from the
builder's own lines, independently of scripts/gen_env_reads.py.

The figures (keys read, accepted, refused with their reason, accepted but not read) are printed at the end of
the run, recorded as junit properties and written into the assertion messages.
"""
from __future__ import annotations

import re

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as config
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_env_reads as generated
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_versions as versions

LINES = versions.LINE_ORDER
BUILDER = 'lib/mastodon/redis_configuration.rb'
# The builder's suffixes: the names of REDIS_PREFIXED without their REDIS_ (lines 40-45 and 69-73).
SUFFIXES = set(name[len('REDIS_'):] for name in config.REDIS_PREFIXED)
# Own keys and who reads them instead of Mastodon's code; the component each one belongs to.
OWN_COMPONENTS = {'SECRET_KEY_BASE': config._RAILS, 'OTP_SECRET': config._RAILS, 'PGSSLROOTCERT': config._RAILS,
                  'NODE_EXTRA_CA_CERTS': (config.STREAMING,)}
# Read by Mastodon only to refuse them or to skip the post-deployment migrations.
READ_TO_REFUSE = {'REDIS_NAMESPACE': 'config/initializers/deprecations.rb:3',
                  'SKIP_POST_DEPLOYMENT_MIGRATIONS': 'lib/mastodon/database.rb:31'}
# Development, test and maintainer code: a key read only there is not a setting of a production instance.
NOT_PRODUCTION_CODE = re.compile(r'\A(config/environments/(development|test)\.rb|lib/tasks/(dev|repo|annotate_rb)'
                                 r'\.rake):\d+\Z')
RAILS_SECRETS = ('SECRET_KEY_BASE', 'OTP_SECRET', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'SMTP_PASSWORD',
                 'BULK_SMTP_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY',
                 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT')


def _version(line):
    return config.SUPPORTED_LINES[line]


def resolved(catalogue):
    """{name: [places]} with the builder's suffixes replaced by the full names it builds."""
    out = {}
    for name, places in catalogue.items():
        for place in places:
            if place.startswith(BUILDER + ':') and (name in SUFFIXES or name == 'REDIS_'):
                for prefix in config.REDIS_PREFIXES:
                    if name != 'REDIS_':
                        out.setdefault(prefix + 'REDIS_' + name, []).append(place)
            else:
                out.setdefault(name, []).append(place)
    return out


def _streaming(reads):
    return set(k for k, places in reads.items() if any(p.startswith('streaming/') for p in places))


def _rails(reads):
    return set(k for k, places in reads.items() if any(not p.startswith('streaming/') for p in places))


@pytest.mark.parametrize('line', LINES)
def test_schema_against_what_the_line_reads(env_reads, conformance_summary, record_property, line):
    """Every key the line reads is accepted or refused with its reason; every key accepted is read, except
    the documented OWN_KEYS. Targets: 0 refused without a reason, 0 accepted and not read but OWN_KEYS."""
    reads = resolved(env_reads[line])
    read = set(reads)
    accepted = config.accepted_keys(_version(line))
    refused = read - accepted
    unexplained = sorted(key for key in refused if key not in config.REFUSED)
    not_read = accepted - read
    figures = dict(read=len(read), accepted=len(accepted), read_and_accepted=len(read & accepted),
                   refused_with_reason=len(refused) - len(unexplained), refused_without_reason=len(unexplained),
                   accepted_not_read=len(not_read), accepted_not_read_own=len(not_read & set(config.OWN_KEYS)))
    for name, value in figures.items():
        record_property('%s_%s' % (line, name), value)
    text = '%s (%s): %s; refused: %s; accepted and not read: %s' % (
        line, versions.env_reads_catalogue(line), ', '.join('%s=%d' % item for item in figures.items()),
        ', '.join(sorted(refused)), ', '.join(sorted(not_read)))
    print(text)
    conformance_summary.append(text)
    assert unexplained == [], 'read by Mastodon %s but refused without a reason: %s [%s]' % (
        line, ', '.join(unexplained), text)
    assert not_read == set(config.OWN_KEYS), 'accepted but not read by Mastodon %s: %s [%s]' % (
        line, ', '.join(sorted(not_read - set(config.OWN_KEYS))), text)
    for key in config.OWN_KEYS:
        assert key not in reads and len(config.OWN_KEYS[key]) > 20, key


@pytest.mark.parametrize('line', LINES)
def test_refused_keys_carry_a_reason_that_holds(env_reads, line):
    """REDIS_NAMESPACE aborts the boot (deprecations.rb:3-17), any SKIP_POST_DEPLOYMENT_MIGRATIONS skips
    (database.rb:31), FORBIDDEN keys are read by the process before the file; a NOT_FOR_PRODUCTION key is read only
    by development, test or maintainer code, or its reason cites the place; the rest of REJECTED is read nowhere."""
    reads = resolved(env_reads[line])
    for key in config.REJECTED:
        if key in READ_TO_REFUSE:
            assert READ_TO_REFUSE[key] in reads[key], key
        else:
            assert key not in reads, '%s is read by Mastodon %s' % (key, line)
        errors, dummy = config.validate({key: 'x'}, version=_version(line))
        assert [e for e in errors if e.key == key and 'Mastodon %s' % line in e.reason], key
    for key, reason in config.NOT_FOR_PRODUCTION.items():
        for place in reads.get(key, []):
            cited = place.rsplit(':', 1)[0] in reason
            assert NOT_PRODUCTION_CODE.match(place) or cited, '%s: %s is production code' % (key, place)
        errors, dummy = config.validate({key: 'x'}, version=_version(line))
        assert [e for e in errors if e.key == key and reason in e.reason], key
    for key in config.FORBIDDEN:
        assert key in reads, key


@pytest.mark.parametrize('line', LINES)
def test_generated_module_matches_the_catalogue(env_reads, line):
    """plugins/module_utils/_mastodon_env_reads.py holds the same names and places as the catalogue."""
    reads = resolved(env_reads[line])
    assert set(generated.READS[line]) == set(reads)
    streaming, rails = _streaming(reads), _rails(reads)
    for key, where in generated.READS[line].items():
        expected = 'both' if key in streaming and key in rails else 'streaming' if key in streaming else 'rails'
        assert where == expected, key


def test_lines_of_each_key_follow_the_catalogues(env_reads):
    """A key is accepted for exactly the lines that read it (ES_QUERY_TIMEOUT from 4.7 on, ENABLE_SIDEKIQ_UNIQUE_
    JOBS_UI in 4.5 only, ...); its place (Rails, streaming or both) is the same in every line."""
    reads = dict((line, resolved(env_reads[line])) for line in LINES)
    for key, setting in config.SCHEMA.items():
        if key in config.OWN_KEYS:
            assert setting.lines is None
            continue
        expected = tuple(line for line in LINES if key in reads[line])
        assert (setting.lines or LINES) == expected, key
        places = set((key in _streaming(reads[line]), key in _rails(reads[line])) for line in expected)
        assert len(places) == 1, key
    assert config.SCHEMA['ES_QUERY_TIMEOUT'].lines == ('4.7',)
    assert 'VITE_DEV_SERVER_PUBLIC' in reads['4.6'] and 'VITE_DEV_SERVER_PUBLIC' not in reads['4.7']


@pytest.mark.parametrize('line', LINES)
def test_components_follow_where_the_key_is_read(env_reads, line):
    """Streaming reads a key iff a file under streaming/ reads it; web/sidekiq iff a Rails file does."""
    reads = resolved(env_reads[line])
    streaming, rails = _streaming(reads), _rails(reads)
    for key in config.accepted_keys(_version(line)):
        components = set(config.SCHEMA[key].components)
        if key in OWN_COMPONENTS:
            assert components == set(OWN_COMPONENTS[key]), key
            continue
        assert (config.STREAMING in components) == (key in streaming), key
        assert bool(components & set(config._RAILS)) == (key in rails), key


@pytest.mark.parametrize('line', LINES)
def test_component_env_subsets(env_reads, conformance_summary, line):
    """component_env: streaming gets exactly what streaming/ reads (plus node's NODE_EXTRA_CA_CERTS), no Rails
    secret; rails gets what config/, lib/, app/ read."""
    reads = resolved(env_reads[line])
    version = _version(line)
    env = dict((key, 'x') for key in config.accepted_keys(version))
    streaming = config.component_env(env, 'streaming', version)
    rails = config.component_env(env, 'rails', version)
    assert set(streaming) == (_streaming(reads) & set(env)) | {'NODE_EXTRA_CA_CERTS'}
    assert not set(streaming) & set(RAILS_SECRETS)
    assert set(rails) == (_rails(reads) & set(env)) | {'SECRET_KEY_BASE', 'OTP_SECRET', 'PGSSLROOTCERT'}
    conformance_summary.append('%s: streaming reads %d keys: %s' % (line, len(streaming), ', '.join(sorted(streaming))))


def test_redis_sentinel_credentials_are_read_by_rails_for_every_prefix(env_reads):
    """lib/mastodon/redis_configuration.rb:72-73 reads <prefix>REDIS_SENTINEL_USERNAME/PASSWORD for the prefixes
    none, SIDEKIQ_ and CACHE_; streaming/redis.js:55-56 reads the unprefixed ones."""
    for line in LINES:
        assert env_reads[line]['SENTINEL_USERNAME'] == [BUILDER + ':72'] * 2
        assert env_reads[line]['SENTINEL_PASSWORD'] == [BUILDER + ':73'] * 2
        rails = config.component_env(dict((k, 'x') for k in config.accepted_keys(_version(line))), 'rails',
                                     _version(line))
        for prefix in config.REDIS_PREFIXES:
            for name in ('REDIS_SENTINEL_USERNAME', 'REDIS_SENTINEL_PASSWORD'):
                assert prefix + name in rails, prefix + name
        assert config.SCHEMA['SIDEKIQ_REDIS_SENTINEL_PASSWORD'].secret
        assert config.SCHEMA['REDIS_SENTINEL_USERNAME'].components == config._ALL


def test_keys_refused_as_unknown_before_are_accepted(env_reads):
    """Companions of the *_ENABLED switches and other settings Mastodon reads in production: accepted, for the
    component that reads them."""
    keys = ('CAS_HOST', 'CAS_URL', 'SAML_IDP_SSO_TARGET_URL', 'SAML_CERT', 'OIDC_CLIENT_AUTH_METHOD',
            'OIDC_USE_PKCE', 'LDAP_MAIL', 'LDAP_SEARCH_FILTER', 'PAM_DEFAULT_SERVICE',
            'MASTODON_PROMETHEUS_EXPORTER_WEB_DETAILED_METRICS', 'MASTODON_PROMETHEUS_EXPORTER_SIDEKIQ_DETAILED_METRICS',
            'QUERY_LOG_TAGS_ENABLED', 'PROXY_PROTO_V1', 'S3_CLOUDFRONT_HOST', 'BACKTRACE', 'REPLICA_DB_TASKS')
    for line in LINES:
        for key in keys:
            assert key in env_reads[line], key
            values, errors = config.normalise({key: 'x'})
            assert errors == [], key
        env = dict((key, 'x') for key in keys)
        assert set(config.component_env(env, 'rails', _version(line))) == set(keys)
        assert config.component_env(env, 'streaming', _version(line)) == {}


def test_owned_and_container_set_keys_are_read(env_reads):
    """The keys that a role variable owns, or that a container sets, are Mastodon's (or refused anyway)."""
    for line in LINES:
        reads = resolved(env_reads[line])
        for key in list(config.ROLE_OWNED_KEYS) + list(config.CONTAINER_SET_KEYS) + list(config.DEPRECATED):
            assert key in reads, key
    assert 'config/puma.rb:15' in env_reads['4.7']['WEB_CONCURRENCY']
    assert 'config/puma.rb:5' in env_reads['4.7']['MAX_THREADS']


@pytest.mark.parametrize('line', LINES)
def test_locales_match_the_line_of_default_locale(env_reads, line):
    """config/initializers/i18n.rb: the locale list starts at line 5, and DEFAULT_LOCALE is read 3 lines after
    its end, so the line of that read gives the number of locales of the release."""
    places = [p for p in env_reads[line]['DEFAULT_LOCALE'] if p.startswith('config/initializers/i18n.rb:')]
    assert len(places) == 1
    number = int(places[0].rsplit(':', 1)[1])
    locales = config.LOCALES[line]
    assert number == 8 + len(locales) and len(set(locales)) == len(locales)
    assert {'be', 'ckb', 'ia'} <= set(locales)


def test_log_level_is_read_by_streaming_logging(env_reads):
    """streaming/logging.js:107-108 reads LOG_LEVEL (pino); nothing under config/, lib/, app/ does."""
    for line in LINES:
        assert set(env_reads[line]['LOG_LEVEL']) == {'streaming/logging.js:107', 'streaming/logging.js:108'}
        assert config.SCHEMA['LOG_LEVEL'].choices == config.PINO_LEVELS


def test_redis_names_built_from_a_prefix_are_read_by_the_builder(env_reads):
    """The builder reads REDIS_DRIVER from the same file, and every suffix it builds: in every line."""
    for line in LINES:
        assert any(re.match(r'lib/mastodon/redis_configuration\.rb:\d+', p) for p in env_reads[line]['REDIS_DRIVER'])
        for suffix in SUFFIXES:
            assert any(p.startswith(BUILDER + ':') for p in env_reads[line][suffix]), suffix
