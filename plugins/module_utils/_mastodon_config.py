# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Mastodon's settings: versions, schema, validation, per-component subsets and secret generation.

PRIVATE to this collection: no API guarantees.

The schema is Mastodon's own code, line by line: every key that a supported line reads is accepted for that
line (_mastodon_env_reads, generated from the env-reads catalogues under tests/data/mastodon/), with where it is
read (Rails, streaming or both: component_env), unless it is refused below with the reason (REJECTED: it aborts
the boot or skips the post-deployment migrations; FORBIDDEN: the process reads it before the file; NOT_FOR_PRODUCTION:
only development, test or maintainer tasks read it). SCHEMA's typed entries are the format overlay: the kind of
value Mastodon expects where it checks one, and which keys are secrets. OWN_KEYS are accepted although Mastodon's
Ruby/JS code does not read them by name (tests/integration/schema holds all this against the catalogues). Versions
are data in _mastodon_versions. Error messages name the key and never show a value.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import difflib
import hashlib
import ipaddress
import re
import secrets as _random
import string

from urllib.parse import urlsplit, parse_qs

from ansible_collections.fediops.mastodon.plugins.module_utils import _dotenv
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_env_reads as env_reads
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_versions as versions

WEB, STREAMING, SIDEKIQ = 'web', 'streaming', 'sidekiq'
COMPONENTS = (WEB, STREAMING, SIDEKIQ)
_RAILS = (WEB, SIDEKIQ)
_ALL = COMPONENTS
_STREAM_ONLY = (STREAMING,)
# Where a key is read (the generated catalogue) -> the components that read it.
_PLACED = {env_reads.RAILS: _RAILS, env_reads.STREAMING: _STREAM_ONLY, env_reads.BOTH: _ALL}

# The versions, for the callers of this module (the data and its functions live in _mastodon_versions).
SUPPORTED_LINES = versions.SUPPORTED_LINES
LINE_ORDER = versions.LINE_ORDER
DEFAULT_VERSION = versions.DEFAULT_VERSION
line_of = versions.line_of
version_tuple = versions.version_tuple
zero_downtime_floor = versions.zero_downtime_floor
schema_line = versions.schema_line
VERSION_VARIABLE = 'config_mastodon_version'
OVERRIDE_VARIABLE = 'config_allow_unsupported_version'
_IMAGE_TAG_RE = re.compile(r'\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:@sha256:[0-9a-f]{64})?\Z')

# config.i18n.available_locales: config/initializers/i18n.rb (DEFAULT_LOCALE is read right after the list,
# at line 104 in v4.5.15 and 105 in v4.6.5 and at the 4.7 branch point: one more locale from 4.6, nan-TW,
# mastodon/mastodon#37822; tests/integration/schema checks the count against the catalogues).
_LOCALES_4_5 = tuple((
    'af an ar ast be bg bn br bs ca ckb co cs cy da de el en en-GB eo es es-AR es-MX et eu fa fi fo fr fr-CA fy '
    'ga gd gl he hi hr hu hy ia id ie ig io is it ja ka kab kk kn ko ku kw la lt lv mk ml mr ms my nl nn no oc pa '
    'pl pt-BR pt-PT ro ru sa sc sco si sk sl sq sr sr-Latn sv szl ta te th tr tt ug uk ur vi zgh zh-CN zh-HK zh-TW'
).split())
_LOCALES_4_6 = tuple(sorted(_LOCALES_4_5 + ('nan-TW',), key=str.lower))
LOCALES = {'4.5': _LOCALES_4_5, '4.6': _LOCALES_4_6, '4.7': _LOCALES_4_6}
SSLMODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')
# streaming/logging.js:107-108: pino's levels; any other value is ignored.
PINO_LEVELS = ('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent')
PGBOUNCER_PORT = 25061  # DigitalOcean's managed PgBouncer connection pools listen here


class Setting(object):
    """One key of the schema. `components`: who reads it (derived from the catalogue unless given: web or sidekiq
    alone narrows Rails); `lines`: the supported lines that read it (derived from the catalogue)."""

    def __init__(self, kind='str', components=None, secret=False, choices=None, schemes=None, minimum=None,
                 maximum=None, section='Other', generated=False, lines=None, hint=None):
        self.kind = kind
        self.hint = hint
        self.components = components
        self.secret = secret
        self.choices = choices
        self.schemes = schemes
        self.minimum = minimum
        self.maximum = maximum
        self.section = section
        self.generated = generated
        self.lines = lines


SCHEMA = {}
SECTIONS = []


def _section(title, entries):
    SECTIONS.append((title, [k for k, dummy in entries]))
    for key, setting in entries:
        setting.section = title
        SCHEMA[key] = setting


def _s(kind='str', components=None, **kwargs):
    return Setting(kind=kind, components=components, **kwargs)


_HTTP = ('http', 'https')
_REDIS = ('redis', 'rediss', 'unix')
_PORT = dict(minimum=1, maximum=65535)

_section('Federation', [
    ('LOCAL_DOMAIN', _s('domain')),
    ('WEB_DOMAIN', _s('domain')),
    ('ALTERNATE_DOMAINS', _s('domains')),
    ('AUTHORIZED_FETCH', _s('bool')),
    ('LIMITED_FEDERATION_MODE', _s('bool')),
    ('DISALLOW_UNAUTHENTICATED_API_ACCESS', _s('bool')),
    ('DISABLE_FOLLOWERS_SYNCHRONIZATION', _s('bool')),
    ('ALLOWED_PRIVATE_ADDRESSES', _s()),
    ('SINGLE_USER_MODE', _s('bool')),
    ('DISABLE_AUTOMATIC_SWITCHING_TO_APPROVED_REGISTRATIONS', _s('bool')),
    ('DEFAULT_LOCALE', _s('locale')),
    ('FORCE_DEFAULT_LOCALE', _s('bool', (WEB,))),
])
_section('Secrets', [
    ('SECRET_KEY_BASE', _s(secret=True, generated=True)),
    ('OTP_SECRET', _s(secret=True, generated=True)),
    ('VAPID_PRIVATE_KEY', _s(secret=True, generated=True)),
    ('VAPID_PUBLIC_KEY', _s(secret=True, generated=True)),
    ('ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', _s(secret=True, generated=True)),
    ('ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', _s(secret=True, generated=True)),
    ('ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY', _s(secret=True, generated=True)),
])
_section('Deployment', [
    ('RAILS_SERVE_STATIC_FILES', _s('bool', (WEB,))),
    ('RAILS_LOG_LEVEL', _s('enum', choices=('debug', 'info', 'warn', 'error', 'fatal', 'unknown'))),
    ('LOG_LEVEL', _s('enum', _STREAM_ONLY, choices=PINO_LEVELS,
                     hint='the pino levels of Mastodon {line}\'s streaming server (streaming/logging.js); '
                          'npmlog\'s silly, verbose and http are gone since 4.3')),
    ('TRUSTED_PROXY_IP', _s('str', (WEB, STREAMING))),
    ('LOCAL_HTTPS', _s('bool')),
    ('NODE_EXTRA_CA_CERTS', _s('path', _STREAM_ONLY)),
    ('PGSSLROOTCERT', _s('path', _RAILS)),
    ('FFMPEG_BINARY', _s('path')),
    ('FFPROBE_BINARY', _s('path')),
    ('MASTODON_USE_LIBVIPS', _s('bool')),
    ('MAGICK_CONFIGURE_PATH', _s('path')),
    ('EXPERIMENTAL_FEATURES', _s()),
    ('UPDATE_CHECK_URL', _s('url', schemes=_HTTP)),
    ('MASTODON_PROMETHEUS_EXPORTER_ENABLED', _s('bool')),
    ('MASTODON_PROMETHEUS_EXPORTER_LOCAL', _s('bool')),
    ('MASTODON_PROMETHEUS_EXPORTER_HOST', _s('host')),
    ('MASTODON_PROMETHEUS_EXPORTER_PORT', _s('int', **_PORT)),
    ('OTEL_SERVICE_NAME_PREFIX', _s()),
])
_section('Scaling', [
    ('WEB_CONCURRENCY', _s('int', (WEB,), minimum=0, maximum=256)),
    ('MAX_THREADS', _s('int', minimum=1, maximum=1024)),
    ('MIN_THREADS', _s('int', (WEB,), minimum=0, maximum=1024)),
    ('PERSISTENT_TIMEOUT', _s('int', (WEB,), minimum=1)),
    ('SIDEKIQ_CONCURRENCY', _s('int', (SIDEKIQ,), minimum=1, maximum=1024)),
    ('DB_POOL', _s('int', _ALL, minimum=1, maximum=1024)),
    ('PREPARED_STATEMENTS', _s('bool')),
    ('STREAMING_API_BASE_URL', _s('url', schemes=('ws', 'wss'))),
    ('MAX_REQUEST_POOL_SIZE', _s('int', minimum=1)),
])
_section('PostgreSQL', [
    ('DB_HOST', _s('host', _ALL)),
    ('DB_PORT', _s('int', _ALL, **_PORT)),
    ('DB_NAME', _s('str', _ALL)),
    ('DB_USER', _s('str', _ALL)),
    ('DB_PASS', _s('str', _ALL, secret=True)),
    ('DB_SSLMODE', _s('enum', _ALL, choices=SSLMODES)),
    ('DATABASE_URL', _s('url', _ALL, schemes=('postgres', 'postgresql'))),
    ('REPLICA_DB_HOST', _s('host')),
    ('REPLICA_DB_PORT', _s('int', **_PORT)),
    ('REPLICA_DB_NAME', _s()),
    ('REPLICA_DB_USER', _s()),
    ('REPLICA_DB_PASS', _s(secret=True)),
    ('REPLICA_PREPARED_STATEMENTS', _s('bool')),
    ('REPLICA_DATABASE_URL', _s('url', schemes=('postgres', 'postgresql'))),
])
# lib/mastodon/redis_configuration.rb builds these names for the prefixes none, CACHE_ and SIDEKIQ_ (lines 38-45
# and 69-73, the sentinel credentials included); streaming/redis.js reads the unprefixed ones too.
REDIS_PREFIXED = ('REDIS_URL', 'REDIS_USER', 'REDIS_PASSWORD', 'REDIS_HOST', 'REDIS_PORT', 'REDIS_DB',
                  'REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PORT', 'REDIS_SENTINELS', 'REDIS_SENTINEL_USERNAME',
                  'REDIS_SENTINEL_PASSWORD')
REDIS_PREFIXES = ('', 'CACHE_', 'SIDEKIQ_')
_REDIS_KINDS = {'REDIS_URL': dict(kind='url', schemes=_REDIS), 'REDIS_PASSWORD': dict(secret=True),
                'REDIS_HOST': dict(kind='host'), 'REDIS_PORT': dict(kind='int', **_PORT),
                'REDIS_DB': dict(kind='int', minimum=0), 'REDIS_SENTINEL_PORT': dict(kind='int', **_PORT),
                'REDIS_SENTINEL_PASSWORD': dict(secret=True)}
# The order of the rendered file is kept as it was: the prefixed names first, then the sentinel credentials.
_redis = [(_prefix + _name, _s(**_REDIS_KINDS.get(_name, {})))
          for _prefix in REDIS_PREFIXES for _name in REDIS_PREFIXED[:9]]
_redis += [(_prefix + _name, _s(**_REDIS_KINDS.get(_name, {})))
           for _name in REDIS_PREFIXED[9:] for _prefix in REDIS_PREFIXES]
_section('Redis', _redis + [
    ('REDIS_DRIVER', _s('enum', choices=('ruby', 'hiredis'))),
])
_section('Elasticsearch', [
    ('ES_ENABLED', _s('bool')),
    ('ES_PRESET', _s('enum', choices=('single_node_cluster', 'small_cluster', 'large_cluster'))),
    ('ES_HOST', _s('host_or_url', schemes=_HTTP)),
    ('ES_PORT', _s('int', **_PORT)),
    ('ES_USER', _s()),
    ('ES_PASS', _s(secret=True)),
    ('ES_PREFIX', _s()),
    ('ES_CA_FILE', _s('path')),
])
_smtp = []
for _prefix in ('', 'BULK_'):
    _smtp += [
        (_prefix + 'SMTP_SERVER', _s('host')),
        (_prefix + 'SMTP_PORT', _s('int', **_PORT)),
        (_prefix + 'SMTP_LOGIN', _s()),
        (_prefix + 'SMTP_PASSWORD', _s(secret=True)),
        (_prefix + 'SMTP_DOMAIN', _s('host')),
        (_prefix + 'SMTP_AUTH_METHOD', _s('enum', choices=('plain', 'login', 'cram_md5', 'none'))),
        (_prefix + 'SMTP_CA_FILE', _s('path')),
        (_prefix + 'SMTP_OPENSSL_VERIFY_MODE', _s('enum', choices=('none', 'peer', 'client_once',
                                                                   'fail_if_no_peer_cert'))),
        (_prefix + 'SMTP_ENABLE_STARTTLS_AUTO', _s('bool')),
        (_prefix + 'SMTP_ENABLE_STARTTLS', _s('enum', choices=('auto', 'always', 'never'))),
        (_prefix + 'SMTP_TLS', _s('bool')),
        (_prefix + 'SMTP_SSL', _s('bool')),
    ]
_section('E-mail', _smtp + [
    ('SMTP_FROM_ADDRESS', _s()),
    ('SMTP_REPLY_TO', _s()),
    ('SMTP_RETURN_PATH', _s()),
    ('SMTP_DELIVERY_METHOD', _s('enum', choices=('smtp', 'sendmail', 'file'))),
    ('DISABLE_EMAIL_SUBSCRIPTIONS', _s('bool')),
])
_section('File storage', [
    ('CDN_HOST', _s('url', schemes=_HTTP)),
    ('EXTRA_MEDIA_HOSTS', _s()),
    ('PAPERCLIP_ROOT_PATH', _s('path')),
    ('PAPERCLIP_ROOT_URL', _s()),
    ('S3_ENABLED', _s('bool')),
    ('S3_REGION', _s()),
    ('S3_ENDPOINT', _s('url', schemes=_HTTP)),
    ('S3_BUCKET', _s()),
    ('AWS_ACCESS_KEY_ID', _s()),
    ('AWS_SECRET_ACCESS_KEY', _s(secret=True)),
    ('S3_SIGNATURE_VERSION', _s()),
    ('S3_OVERRIDE_PATH_STYLE', _s('bool')),
    ('S3_PROTOCOL', _s('enum', choices=_HTTP)),
    ('S3_HOSTNAME', _s('host')),
    ('S3_ALIAS_HOST', _s('host_path')),
    ('S3_KEY_PREFIX', _s()),
    ('S3_OPEN_TIMEOUT', _s('int', minimum=1)),
    ('S3_READ_TIMEOUT', _s('int', minimum=1)),
    ('S3_RETRY_LIMIT', _s('int', minimum=0)),
    ('S3_FORCE_SINGLE_REQUEST', _s('bool')),
    ('S3_ENABLE_CHECKSUM_MODE', _s('bool')),
    ('S3_STORAGE_CLASS', _s()),
    ('S3_MULTIPART_THRESHOLD', _s('int', minimum=1)),
    ('S3_PERMISSION', _s()),
    ('S3_BATCH_DELETE_LIMIT', _s('int', minimum=1, maximum=1000)),
    ('S3_BATCH_DELETE_RETRY', _s('int', minimum=0)),
    ('AZURE_ENABLED', _s('bool')),
    ('AZURE_STORAGE_ACCOUNT', _s()),
    ('AZURE_STORAGE_ACCESS_KEY', _s(secret=True)),
    ('AZURE_CONTAINER_NAME', _s()),
    ('AZURE_ALIAS_HOST', _s('host_path')),
    ('SWIFT_ENABLED', _s('bool')),
    ('SWIFT_USERNAME', _s()),
    ('SWIFT_PASSWORD', _s(secret=True)),
    ('SWIFT_TENANT', _s()),
    ('SWIFT_AUTH_URL', _s('url', schemes=_HTTP)),
    ('SWIFT_CONTAINER', _s()),
    ('SWIFT_OBJECT_URL', _s('url', schemes=_HTTP)),
    ('SWIFT_REGION', _s()),
    ('SWIFT_DOMAIN_NAME', _s()),
    ('SWIFT_PROJECT_ID', _s()),
    ('SWIFT_CACHE_TTL', _s('int', minimum=0)),
    ('SWIFT_TEMP_URL_KEY', _s(secret=True)),
    ('CACHE_BUSTER_ENABLED', _s('bool')),
    ('CACHE_BUSTER_HTTP_METHOD', _s('enum', choices=('GET', 'PURGE'))),
    ('CACHE_BUSTER_SECRET_HEADER', _s()),
    ('CACHE_BUSTER_SECRET', _s(secret=True)),
])
_section('Sign-in', [
    ('OMNIAUTH_ONLY', _s('bool')),
    ('ONE_CLICK_SSO_LOGIN', _s('bool')),
    ('SSO_ACCOUNT_SETTINGS', _s('url', schemes=_HTTP)),
    ('SSO_ACCOUNT_SIGN_UP', _s('url', schemes=_HTTP)),
    ('ALLOW_UNSAFE_AUTH_PROVIDER_REATTACH', _s('bool')),
    ('OIDC_ENABLED', _s('bool')),
    ('OIDC_DISPLAY_NAME', _s()),
    ('OIDC_ISSUER', _s('url', schemes=_HTTP)),
    ('OIDC_DISCOVERY', _s('bool')),
    ('OIDC_SCOPE', _s()),
    ('OIDC_UID_FIELD', _s()),
    ('OIDC_CLIENT_ID', _s()),
    ('OIDC_CLIENT_SECRET', _s(secret=True)),
    ('OIDC_REDIRECT_URI', _s('url', schemes=_HTTP)),
    ('OIDC_SECURITY_ASSUME_EMAIL_IS_VERIFIED', _s('bool')),
    ('SAML_ENABLED', _s('bool')),
    ('SAML_PRIVATE_KEY', _s(secret=True)),
    ('CAS_ENABLED', _s('bool')),
    ('LDAP_ENABLED', _s('bool')),
    ('LDAP_HOST', _s('host')),
    ('LDAP_PORT', _s('int', **_PORT)),
    ('LDAP_METHOD', _s()),
    ('LDAP_BASE', _s()),
    ('LDAP_BIND_DN', _s()),
    ('LDAP_PASSWORD', _s(secret=True)),
    ('PAM_ENABLED', _s('bool')),
])
_section('Limits and other', [
    ('EMAIL_DOMAIN_ALLOWLIST', _s()),
    ('EMAIL_DOMAIN_DENYLIST', _s()),
    ('EMAIL_DOMAIN_LISTS_APPLY_AFTER_CONFIRMATION', _s('bool')),
    ('MAX_SESSION_ACTIVATIONS', _s('int', minimum=1)),
    ('USER_ACTIVE_DAYS', _s('int', minimum=1)),
    ('HCAPTCHA_SITE_KEY', _s()),
    ('HCAPTCHA_SECRET_KEY', _s(secret=True)),
    ('IP_RETENTION_PERIOD', _s('int', minimum=1)),
    ('SESSION_RETENTION_PERIOD', _s('int', minimum=1)),
    ('MAX_FOLLOWS_THRESHOLD', _s('int', minimum=1)),
    ('MAX_FOLLOWS_RATIO', _s('float')),
    ('DEEPL_API_KEY', _s(secret=True)),
    ('DEEPL_PLAN', _s('enum', choices=('free', 'pro'))),
    ('LIBRE_TRANSLATE_ENDPOINT', _s('url', schemes=_HTTP)),
    ('LIBRE_TRANSLATE_API_KEY', _s(secret=True)),
    ('SOURCE_BASE_URL', _s('url', schemes=_HTTP)),
    ('GITHUB_REPOSITORY', _s()),
    ('ALLOW_ACCESS_TO_HIDDEN_SERVICE', _s('bool')),
    ('ENABLE_SIDEKIQ_UNIQUE_JOBS_UI', _s('bool', (WEB,))),
    ('DONATION_CAMPAIGNS_URL', _s('url', schemes=_HTTP)),
    ('DONATION_CAMPAIGNS_ENVIRONMENT', _s()),
])

# Keys of the schema that Mastodon's own code (config/, lib/, app/, streaming/) does not read by name, and
# who reads them instead. Everything else in SCHEMA is read by Mastodon (tests/integration/schema).
OWN_KEYS = {
    'SECRET_KEY_BASE': 'read by Rails itself (railties: Rails.application.secret_key_base), not by Mastodon code',
    'OTP_SECRET': 'read by the post-deployment migration db/post_migrate/20240307180905_migrate_devise_two_factor'
                  '_secrets.rb when a database from before 4.3 is upgraded (db/ is outside the env-reads scan)',
    'PGSSLROOTCERT': 'read by libpq (the pg gem of web, sidekiq and the migrations): the CA for DB_SSLMODE '
                     'verify-full',
    'NODE_EXTRA_CA_CERTS': 'read by node when the streaming process starts: the PostgreSQL CA for streaming',
}
# Keys refused for every supported line: the reason and what to do instead.
REJECTED = {
    'REDIS_NAMESPACE': 'Mastodon 4.4 and later abort at boot when it is set (config/initializers/deprecations.rb); '
                       'move the keys out of the namespace (github.com/mastodon/redis_namespace_migration), '
                       'set ES_PREFIX to the old namespace if Elasticsearch indexes were created with it, and '
                       'give each instance its own REDIS_DB or Redis server instead',
    'CACHE_REDIS_NAMESPACE': 'not read any more (namespaces were removed in 4.4); use CACHE_REDIS_DB or '
                             'CACHE_REDIS_URL to separate the cache',
    'SKIP_POST_DEPLOYMENT_MIGRATIONS': (
        'must not be in the environment: Mastodon skips the post-deployment migrations when it is set to ANY '
        'value, false included (lib/mastodon/database.rb:31); the migration Jobs set it themselves for the '
        'pre-deployment phase only'),
    'STREAMING_CLUSTER_NUM': 'not read any more (the streaming server runs one process since 4.2); scale streaming '
                             'with streaming_replicas',
    'STATSD_ADDR': 'not read any more (StatsD support was removed in 4.3); use MASTODON_PROMETHEUS_EXPORTER_ENABLED '
                   'or OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT through extra_env)',
    'SMTP_READ_TIMEOUT': 'not read any more; remove it (Mastodon uses the mail gem\'s timeouts)',
    'RAILS_LOG_TO_STDOUT': 'not read any more: Mastodon logs to stdout in production; remove it',
}
REJECTED['STATSD_NAMESPACE'] = REJECTED['STATSD_SIDEKIQ'] = REJECTED['STATSD_ADDR']
REJECTED['SMTP_OPEN_TIMEOUT'] = REJECTED['SMTP_READ_TIMEOUT']

# Set by the process or container, not read from the file (docs: "cannot be defined in dotenv files").
FORBIDDEN = {
    'RAILS_ENV': 'set it on the container/process: Rails reads it before it loads the dotenv file',
    'NODE_ENV': 'set it on the streaming container/process: it is read before the dotenv file',
    'PORT': 'set it per process (web 3000, streaming 4000): it is read before the dotenv file',
    'BIND': 'set it per process: it is read before the dotenv file',
    'SOCKET': 'set it per process: it is read before the dotenv file',
}
_SECRET_NAME_RE = re.compile(r'(PASSWORD|PASS|SECRET|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIALS?)(_|$)')
_IMAGE_SETS = 'the image sets it'
# Read by Mastodon, but not settings of a production instance: refused with the reason (tests/integration/schema
# checks that every place the catalogue lists for them is development, test or maintainer code, or is cited here).
NOT_FOR_PRODUCTION = {
    'CI': 'read only by config/environments/test.rb: no effect in production',
    'HEROKU': 'read only by config/environments/development.rb: no effect in production',
    'REMOTE_DEV': 'read only by config/environments/development.rb: no effect in production',
    'VAGRANT': 'read only by config/environments/development.rb: no effect in production',
    'DISABLE_FORGERY_REQUEST_PROTECTION': 'read only by config/environments/development.rb: no effect in production',
    'TEST_ENV_NUMBER': 'read only to separate parallel test databases (config/database.yml, '
                       'lib/mastodon/redis_configuration.rb:45): it would rename the database and the Redis DB',
    'TEST_DATA_SHOWCASE_EMAIL': 'read only by the development task lib/tasks/dev.rake',
    'TEST_DATA_SHOWCASE_SIDEKICK_EMAIL': 'read only by the development task lib/tasks/dev.rake',
    'GITHUB_API_TOKEN': 'read only by the maintainers\' task lib/tasks/repo.rake',
    'ANNOTATERB_SKIP_ON_DB_TASKS': 'read only by the development task lib/tasks/annotate_rb.rake',
    'VITE_DEV_SERVER_PUBLIC': 'the address of the development asset server (config/initializers/'
                              'content_security_policy.rb:34); gone in 4.7',
    'BUNDLE_GEMFILE': 'read by Bundler at boot to find the Gemfile (config/boot.rb:15); %s' % _IMAGE_SETS,
    'SECRET_KEY_BASE_DUMMY': 'set only while the image is built (assets:precompile); at run time it turns off the '
                             'check of the encryption keys (config/initializers/active_record_encryption.rb:8)',
    'IGNORE_ALREADY_SET_SECRETS': 'an option of the task db:encryption:init (lib/tasks/db.rake:15), which the '
                                  'role replaces: it generates the ActiveRecord encryption keys itself',
    'USER': 'the login name of the process, read by lib/mastodon/migration_helpers.rb:727; not a setting',
    'MASTODON_SIDEKIQ_READY_FILENAME': 'the sidekiq containers set it for their readiness probe (config/initializers/'
                                       'sidekiq.rb:11 touches that file); %s too' % _IMAGE_SETS,
}
# Keys Mastodon still reads as the old name of another (config/initializers/deprecations.rb warns at boot):
# accepted, with a warning naming the new name.
DEPRECATED = {'WHITELIST_MODE': 'LIMITED_FEDERATION_MODE', 'EMAIL_DOMAIN_BLACKLIST': 'EMAIL_DOMAIN_DENYLIST',
              'EMAIL_DOMAIN_WHITELIST': 'EMAIL_DOMAIN_ALLOWLIST'}
# Keys a role variable sets on a container (plugins/module_utils/_manifests.py) or that the plan derives from a
# variable: {key: (variable, why, role)}. In config_env or config_extra_env they would be overridden silently or
# bypass the variable's checks, so the plan refuses them there naming the variable (_deploy/rules.py); in a role's
# extra_env too, for `role` (None: every role).
ROLE_OWNED_KEYS = {
    'LOCAL_DOMAIN': ('config_local_domain', 'the LOCAL_DOMAIN guard and the Ingress hosts read it there', None),
    'WEB_DOMAIN': ('config_web_domain', 'the LOCAL_DOMAIN guard and the Ingress hosts read it there', None),
    'WEB_CONCURRENCY': ('web_concurrency', 'the web containers set it from that variable, over config_env', 'web'),
    'MAX_THREADS': ('web_max_threads', 'the web containers set it from that variable, over config_env, and the '
                                       'DB_POOL check reads it there', 'web'),
}
# Keys a container sets although config_env may hold them too: allowed on purpose, as config_env's value is the
# one the other components read.
CONTAINER_SET_KEYS = {
    'DB_POOL': 'web and streaming read config_env\'s (config/database.yml:3, streaming/database.js:105); each '
               'sidekiq group sets its own (its concurrency) and the migration Jobs theirs',
    'DB_SSLMODE': 'Rails reads config_env\'s (config_db_sslmode by default); the streaming containers set their '
                  'own (streaming_db_sslmode, else the one matching Rails\'), as streaming reads the same name with '
                  'other meanings (streaming/database.js:85-97)',
    'PREPARED_STATEMENTS': 'the application reads config_env\'s; the migration Jobs set true for their direct '
                           '(non-PgBouncer) connection',
}
# Every key Mastodon reads that is refused, with the reason.
REFUSED = dict(NOT_FOR_PRODUCTION)
REFUSED.update(REJECTED)
REFUSED.update(FORBIDDEN)


# Keys the overlay does not know whose name misleads: named like a secret but not one (an endpoint URL and a
# switch of the OpenID Connect provider, config/initializers/3_omniauth.rb:89,100), or a secret named otherwise
# (Rails' credentials key, config/environments/production.rb:21 at v4.5.15).
NOT_SECRET = ('OIDC_TOKEN_ENDPOINT', 'OIDC_SEND_SCOPE_TO_TOKEN_ENDPOINT', 'CACHE_BUSTER_SECRET_HEADER')
SECRET_NAMED_OTHERWISE = ('RAILS_MASTER_KEY',)

# The schema of every line: the catalogue's keys (less the refused ones) with the overlay's formats. Keys the
# overlay does not know are plain strings, secret when named like one; they render under "Other" (sorted).
for _line in versions.LINE_ORDER:
    for _key in env_reads.READS[_line]:
        if _key not in REFUSED and _key not in SCHEMA:
            SCHEMA[_key] = Setting(secret=(bool(_SECRET_NAME_RE.search(_key)) and _key not in NOT_SECRET
                                           or _key in SECRET_NAMED_OTHERWISE))
for _key, _setting in SCHEMA.items():
    _where = set(env_reads.READS[_line].get(_key) for _line in versions.LINE_ORDER) - {None}
    if _key in OWN_KEYS:
        _setting.lines = None
        _setting.components = _setting.components or _RAILS
        continue
    _lines = tuple(_line for _line in versions.LINE_ORDER if _key in env_reads.READS[_line])
    _setting.lines = None if _lines == versions.LINE_ORDER else _lines
    if _setting.components is None:
        # The same place in every line (tests/integration/schema); a key no line reads is never accepted.
        _setting.components = _PLACED[_where.pop()] if _where else _RAILS
REQUIRED = ('LOCAL_DOMAIN', 'SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY',
            'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT',
            'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY')
GENERATED = ('SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY',
             'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY', 'OTP_SECRET')
# The one host-name rule (RFC 1123 labels of letters, digits and inner hyphens, 253 at most): resolvers take any
# case and a final dot, so values of the environment (SMTP_SERVER, ES_HOST, ...) may have them.
# _deploy/rules.check_host adds what Kubernetes needs of the names it puts into objects (Ingress hosts): lower case
# and no final dot (a DNS-1123 subdomain, k8s.io/apimachinery/pkg/util/validation IsDNS1123Subdomain).
_HOST_RE = re.compile(r'\A(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?\Z')


def is_host_name(value):
    return bool(_HOST_RE.match(value))


_TRUE = ('true',)
_FALSE = ('false',)


class ConfigError(ValueError):
    """A validation error for one key. The message names the key and never contains its value."""

    def __init__(self, key, reason):
        self.key = key
        self.reason = reason
        super(ConfigError, self).__init__('%s: %s' % (key, reason))


def _supported_text():
    return ', '.join('%s (newest known %s)' % (line, SUPPORTED_LINES[line]) for line in LINE_ORDER)


def parse_version(text, allow_unsupported=False):
    """(tag, line) of a Mastodon image version: `vX.Y.Z`, optionally pinned as `vX.Y.Z@sha256:<64 hex>`.

    `tag` is the text as given, so `<repository>:<tag>` is a valid image reference in both forms; `line` is
    `X.Y`, one of SUPPORTED_LINES: any patch of a supported line is accepted, also one newer than the newest
    known. Other lines are refused unless `allow_unsupported`, which also admits any image tag (then `line` is
    `X.Y` when the tag has that form, else None). Raises ConfigError naming config_mastodon_version.
    """
    tag = text if isinstance(text, str) else ''
    line = versions.line_of(tag)
    if line is None:
        if allow_unsupported and _IMAGE_TAG_RE.match(tag):
            return tag, None
        raise ConfigError(VERSION_VARIABLE, 'must be a Mastodon release tag vX.Y.Z, optionally pinned as '
                                            'vX.Y.Z@sha256:<64 hex digits> (supported lines: %s)' % _supported_text())
    if not versions.is_supported(line) and not allow_unsupported:
        ends = versions.end_of_support(line)
        if ends:
            status = 'Mastodon ends its support on %s' % ends if ends > _today() else 'Mastodon ended its support on %s' % ends
        elif versions.line_tuple(line) < versions.line_tuple(LINE_ORDER[0]):
            status = 'Mastodon no longer supports it'
        else:
            status = 'this collection does not know it yet'
        raise ConfigError(VERSION_VARIABLE, 'Mastodon %s is not a supported line (%s); this collection supports %s. '
                                            'Set %s: true to deploy it anyway (its settings are then checked against '
                                            'the nearest supported line)' % (line, status, _supported_text(),
                                                                             OVERRIDE_VARIABLE))
    return tag, line


def _today():
    return datetime.date.today().isoformat()


def version_warnings(version):
    """Warnings about a version that parse_version accepts: an older patch than the newest known (naming it),
    an unsupported line, a tag that is not a release."""
    numbers = versions.version_tuple(version or '')
    if numbers is None:
        return ['%s %s is not a release tag: the settings are checked against Mastodon %s'
                % (VERSION_VARIABLE, version, DEFAULT_VERSION)]
    line = versions.line_of(version)
    if not versions.is_supported(line):
        return ['Mastodon %s is not a supported line: the settings are checked against Mastodon %s'
                % (line, SUPPORTED_LINES[schema_line(version)])]
    newest = versions.newest_known(line)
    if numbers < versions.version_tuple(newest):
        return ['Mastodon %s is older than %s, the newest %s release this collection knows: upgrade to it '
                '(patch releases carry security fixes)' % (version.split('@')[0], newest, line)]
    return []


def accepted_keys(version=DEFAULT_VERSION):
    """The schema's keys for the line of `version`."""
    line = schema_line(version)
    return set(key for key, setting in SCHEMA.items() if setting.lines is None or line in setting.lines)


def _other_line_reason(key, line):
    setting = SCHEMA[key]
    lines = ', '.join(setting.lines)
    if not setting.lines:
        return 'is not read by any supported line of Mastodon; remove it'
    if versions.line_tuple(line) > max(versions.line_tuple(item) for item in setting.lines):
        return 'is not read by Mastodon %s (only by %s); remove it' % (line, lines)
    newest = SUPPORTED_LINES[setting.lines[0]]
    return 'is read only from Mastodon %s on; set %s to %s or remove it' % (setting.lines[0], VERSION_VARIABLE, newest)


def closest(word, candidates, cutoff=0.6):
    """The candidate closest to a misspelt word, or None: the one "did you mean" of the collection."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(word, candidates):
    """' (did you mean X?)' for a message, or ''."""
    match = closest(word, candidates)
    return ' (did you mean %s?)' % match if match else ''


def to_text(key, value):
    """Normalise a YAML value (bool, int, float, str) to the string Mastodon reads."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise ConfigError(key, 'must be a string, number or boolean, not %s' % type(value).__name__)


def _check_type(key, setting, value, line):
    kind = setting.kind
    if kind == 'locale':
        if value in ('true', 'false'):
            # YAML 1.1 (Ansible's) reads yes/no/on/off/true/false unquoted as booleans: `no` (Norwegian) arrives as false.
            raise ConfigError(key, 'is a boolean (%s), not a locale: YAML reads an unquoted yes/no/on/off as true/false; '
                                   'quote the locale, e.g. "no"' % value)
        if value not in LOCALES[line]:
            raise ConfigError(key, 'is not a locale of Mastodon %s; one of %s' % (line, ', '.join(LOCALES[line])))
        return
    if kind == 'bool':
        if value not in _TRUE + _FALSE:
            raise ConfigError(key, 'must be true or false')
    elif kind == 'int':
        if not re.match(r'\A-?[0-9]+\Z', value):
            raise ConfigError(key, 'must be an integer')
        number = int(value)
        if setting.minimum is not None and number < setting.minimum:
            raise ConfigError(key, 'must be at least %d' % setting.minimum)
        if setting.maximum is not None and number > setting.maximum:
            raise ConfigError(key, 'must be at most %d' % setting.maximum)
    elif kind == 'float':
        try:
            float(value)
        except ValueError:
            raise ConfigError(key, 'must be a number')
    elif kind == 'enum':
        if value not in setting.choices:
            hint = ': %s' % setting.hint.format(line=line) if setting.hint else ''
            raise ConfigError(key, 'must be one of %s%s' % (', '.join(setting.choices), hint))
    elif kind == 'domain':
        if '://' in value or '/' in value or ':' in value:
            raise ConfigError(key, 'must be a bare domain name without scheme, port or path (e.g. example.com)')
        if not _HOST_RE.match(value):
            raise ConfigError(key, 'is not a valid domain name')
    elif kind == 'domains':
        for part in value.split(','):
            if not _HOST_RE.match(part.strip()):
                raise ConfigError(key, 'must be a comma-separated list of domain names')
    elif kind in ('host', 'host_path'):
        if '://' in value:
            raise ConfigError(key, 'must be a host name without a scheme')
        host = value.split('/', 1)[0] if kind == 'host_path' else value
        if not value or (not _HOST_RE.match(host) and not _is_ip(host)):
            raise ConfigError(key, 'is not a valid host name or IP address')
    elif kind == 'host_or_url':
        if '://' in value:
            _check_url(key, setting.schemes, value)
        elif not _HOST_RE.match(value) and not _is_ip(value):
            raise ConfigError(key, 'is not a valid host name, IP address or http(s) URL')
    elif kind == 'url':
        _check_url(key, setting.schemes, value)
    elif kind == 'path':
        if not value.startswith('/'):
            raise ConfigError(key, 'must be an absolute path')


def _is_ip(value):
    try:
        ipaddress.ip_address(value.strip('[]'))
        return True
    except ValueError:
        return False


def _check_url(key, schemes, value):
    if _userinfo_unencoded(value):
        raise ConfigError(key, 'the user name or password in the URL holds #, ?, / or @: percent-encode them '
                               '(%23 %3F %2F %40), or Mastodon\'s URL parsers cut the URL there')
    try:
        parts = urlsplit(value)
        dummy = parts.port
    except ValueError:
        raise ConfigError(key, 'is not a valid URL')
    if parts.scheme not in schemes:
        raise ConfigError(key, 'must be a URL with scheme %s' % ' or '.join('%s://' % s for s in schemes))
    if parts.scheme != 'unix' and not parts.hostname:
        raise ConfigError(key, 'URL has no host')


_SCHEME_CHARS = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-')


def _url_rest(value, anchored=False):
    """What follows the `scheme://` of the first URL in `value` (RFC 3986: a letter, then letters, digits, `+`,
    `.`, `-`), or None; `anchored`: only a URL at the start of `value`.

    Linear in the length of `value`, whatever it holds. (The regular expression this replaces,
    `[A-Za-z][A-Za-z0-9+.-]*://` with search(), tried every start position of a long run of letters to its
    end: quadratic, 12 s for one 128 KB value, and it ran on every value of the environment.) Each `://`
    is looked at once, and the scheme before it is read back only as far as the previous `://` (its `:`
    and `/` end any scheme), so no character is read twice."""
    value = value or ''
    start = 0
    while True:
        at = value.find('://', start)
        if at < 0:
            return None
        first = at
        while first > start and value[first - 1] in _SCHEME_CHARS:
            first -= 1
        while first < at and not value[first].isalpha():  # the scheme starts at its first ASCII letter
            first += 1
        if first < at and value[first].isascii():
            if not anchored or first == 0:
                return value[at + 3:]
        if anchored:
            return None
        start = at + 3


def url_userinfo(value):
    """The user-information part (`user:password`) of the first URL in `value`, or None.

    Written for credentials, not for parsing: a password may hold `#`, `?`, `/` or `@` unencoded, which
    makes urlsplit cut the URL before the password (`redis://:pa#ss@host` has no password for it). Here
    the user information is everything between `scheme://` and the LAST `@` of the value, so whatever a
    password holds, it stays inside. A value whose path has an `@` counts too (erring on the safe side).
    """
    rest = _url_rest(value)
    if rest is None or '@' not in rest:
        return None
    return rest[:rest.rindex('@')]


def _userinfo_unencoded(value):
    """Whether a URL's credentials hold a character that URL parsers read as the end of the authority: a second
    `@`, or a `#` or `?` before the last `@` (Ruby's URI, node's URL and urlsplit all cut there). A `/` before an
    `@` is also a path (https://host/@user), so it is left to the parsers (and is_secret errs on the safe side)."""
    rest = _url_rest(value, anchored=True)
    if rest is None or '@' not in rest:
        return False
    authority = re.split(r'[/?#]', rest, 1)[0]
    if authority.count('@') > 1:
        return True
    cut = re.search(r'[/?#]', rest)
    return bool(cut) and '@' not in authority and rest[cut.start()] in '?#' and '@' in rest[cut.start():]


def url_host_port(value):
    """(host, port) of the URL in `value`, read after its user information (see url_userinfo); port may be None."""
    rest = _url_rest(value)
    if rest is None:
        return None, None
    rest = rest[rest.rindex('@') + 1:] if '@' in rest else rest
    authority = re.split(r'[/?#]', rest, 1)[0]
    host, dummy, port = authority.rpartition(':') if not authority.endswith(']') else (authority, '', '')
    if not host:
        host, port = authority, ''
    return host, int(port) if port.isdigit() else None


def url_has_password(value):
    """Whether `value` holds a URL with user information (a password, or a user name that may be one)."""
    return bool(url_userinfo(value))


def is_secret(key, value=''):
    """Whether a key/value belongs in the Kubernetes Secret rather than the ConfigMap: secret keys, any value
    that carries credentials in a URL (whatever its key), and unknown keys named like a secret."""
    setting = SCHEMA.get(key)
    if setting is not None and setting.secret:
        return True
    if url_has_password(value):
        return True
    return setting is None and bool(_SECRET_NAME_RE.search(key))


def _truthy(env, key):
    return env.get(key) == 'true'


def _port_of(env, url_key, port_key):
    if env.get(url_key):
        return url_host_port(env[url_key])[1]
    if env.get(port_key, '').isdigit():
        return int(env[port_key])
    return None


def _cross_checks(env, pgbouncer):
    errors = []
    for prefix in ('', 'CACHE_', 'SIDEKIQ_'):
        url = env.get(prefix + 'REDIS_URL', '')
        if url.startswith('rediss://') and env.get('REDIS_DRIVER') != 'ruby':
            errors.append(ConfigError('REDIS_DRIVER', 'must be ruby when %sREDIS_URL uses rediss:// (TLS): Mastodon '
                                                      'connects to Redis over TLS only with the ruby driver' % prefix))
            break
    if env.get('DB_SSLMODE') == 'no-verify':
        errors.append(ConfigError('DB_SSLMODE', 'no-verify is not a libpq sslmode (Rails fails to connect); use '
                                                'verify-full with PGSSLROOTCERT, or require'))
    for key in ('DATABASE_URL', 'REPLICA_DATABASE_URL'):
        if env.get(key):
            modes = parse_qs(urlsplit(env[key]).query).get('sslmode', [])
            if any(m not in SSLMODES for m in modes):
                errors.append(ConfigError(key, 'sslmode must be one of %s (no-verify is not a libpq sslmode)'
                                          % ', '.join(SSLMODES)))
    detected = _port_of(env, 'DATABASE_URL', 'DB_PORT') == PGBOUNCER_PORT
    if (pgbouncer or (pgbouncer is None and detected)) and env.get('PREPARED_STATEMENTS') != 'false':
        errors.append(ConfigError('PREPARED_STATEMENTS', 'must be false when the database is reached through a '
                                                         'PgBouncer pool (transaction mode; DigitalOcean pools listen '
                                                         'on port %d)' % PGBOUNCER_PORT))
    if _truthy(env, 'S3_ENABLED'):
        for key in ('S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
            if not env.get(key):
                errors.append(ConfigError(key, 'is required when S3_ENABLED is true'))
    if _truthy(env, 'ES_ENABLED') and not env.get('ES_HOST'):
        errors.append(ConfigError('ES_HOST', 'is required when ES_ENABLED is true'))
    if _truthy(env, 'LIMITED_FEDERATION_MODE') and env.get('AUTHORIZED_FETCH') == 'false':
        errors.append(ConfigError('AUTHORIZED_FETCH', 'cannot be false with LIMITED_FEDERATION_MODE=true (limited '
                                                      'federation is built on authorized fetch)'))
    if env.get('WEB_DOMAIN') and env.get('LOCAL_DOMAIN') and env['WEB_DOMAIN'] == env['LOCAL_DOMAIN']:
        errors.append(ConfigError('WEB_DOMAIN', 'is the same as LOCAL_DOMAIN: leave it unset'))
    return errors


def _check_secret_format(key, value):
    if key in ('VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY'):
        raw = _b64decode(value)
        if raw is None:
            raise ConfigError(key, 'is not urlsafe base64 (as rake mastodon:webpush:generate_vapid_key prints)')
        if key == 'VAPID_PUBLIC_KEY' and (len(raw) != 65 or raw[:1] != b'\x04'):
            raise ConfigError(key, 'is not an uncompressed P-256 public point (65 bytes starting with 0x04)')
        if key == 'VAPID_PRIVATE_KEY' and not 1 <= len(raw) <= 32:
            raise ConfigError(key, 'is not a P-256 private scalar (at most 32 bytes)')
    elif not value or value != value.strip():
        raise ConfigError(key, 'must not be empty or have leading/trailing spaces')


def _b64decode(value):
    try:
        return base64.urlsafe_b64decode(value + '=' * (-len(value) % 4))
    except (binascii.Error, ValueError, TypeError):
        return None


def vapid_public_from_private(private_b64):
    """The public key (urlsafe base64 of the uncompressed point) of a VAPID private key, or None."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import serialization
    raw = _b64decode(private_b64)
    if raw is None:
        return None
    try:
        key = ec.derive_private_key(int.from_bytes(raw, 'big'), ec.SECP256R1())
    except ValueError:
        return None
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).decode('ascii')


def generate_vapid_keypair():
    """A VAPID key pair as the web-push gem's VapidKey prints it: urlsafe base64 (padded) of the private
    scalar (32 bytes) and of the uncompressed public point (65 bytes)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import serialization
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, 'big')
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(scalar).decode('ascii'), base64.urlsafe_b64encode(point).decode('ascii')


def generate_secret_key_base():
    """As `rails secret` (SecureRandom.hex(64)): 128 hex characters."""
    return _random.token_hex(64)


def generate_alphanumeric(length=32):
    """As `bin/rails db:encryption:init` (SecureRandom.alphanumeric(32))."""
    alphabet = string.ascii_letters + string.digits
    return ''.join(_random.choice(alphabet) for dummy in range(length))


def fill_secrets(known, generate=True, generate_otp=False):
    """Return (secrets, generated_keys): the secrets in `known` plus newly generated missing ones.

    A secret already in `known` is never replaced. The VAPID pair is generated only when both halves are
    missing (one half alone is an error in validate()).
    """
    result = dict((k, v) for k, v in known.items() if k in GENERATED and v)
    generated = []
    if not generate:
        return result, generated
    if 'SECRET_KEY_BASE' not in result:
        result['SECRET_KEY_BASE'] = generate_secret_key_base()
        generated.append('SECRET_KEY_BASE')
    if generate_otp and 'OTP_SECRET' not in result:
        result['OTP_SECRET'] = generate_secret_key_base()
        generated.append('OTP_SECRET')
    if 'VAPID_PRIVATE_KEY' not in result and 'VAPID_PUBLIC_KEY' not in result:
        result['VAPID_PRIVATE_KEY'], result['VAPID_PUBLIC_KEY'] = generate_vapid_keypair()
        generated += ['VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY']
    for key in ('ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT',
                'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY'):
        if key not in result:
            result[key] = generate_alphanumeric(32)
            generated.append(key)
    return result, generated


def normalise(env, extra_env=None):
    """Turn the user's dicts into one {KEY: text} dict; returns (values, errors). Unknown/forbidden keys are errors.

    Keys refused for a version (REFUSED, or of another line) are passed on: validate() names the version.
    """
    values = {}
    errors = []
    for source, data in (('env', env or {}), ('extra_env', extra_env or {})):
        for key in sorted(data, key=str):
            key_text = str(key)
            if key_text in FORBIDDEN:
                errors.append(ConfigError(key_text, 'must not be in .env.production: ' + FORBIDDEN[key_text]))
                continue
            if source == 'env' and key_text not in SCHEMA and key_text not in REFUSED:
                reason = 'unknown Mastodon setting' + did_you_mean(key_text.upper(), SCHEMA)
                reason += '; pass settings outside the schema through extra_env'
                errors.append(ConfigError(key_text, reason))
                continue
            if source == 'extra_env' and key_text in values:
                errors.append(ConfigError(key_text, 'is set in both env and extra_env'))
                continue
            if data[key] is None:
                continue
            try:
                values[key_text] = to_text(key_text, data[key])
            except ConfigError as exc:
                errors.append(exc)
    return values, errors


def validate(env, pgbouncer=None, components=None, version=DEFAULT_VERSION):
    """Validate a complete {KEY: text} env (secrets included) for the Mastodon `version` (a tag that
    parse_version accepted). Returns (errors, warnings); nothing raises."""
    errors = []
    warnings = version_warnings(version)
    line = schema_line(version)
    accepted = accepted_keys(version)
    for key in REQUIRED:
        if not env.get(key):
            errors.append(ConfigError(key, 'is required'))
    for key in sorted(env):
        value = env[key]
        setting = SCHEMA.get(key)
        try:
            if key in FORBIDDEN:
                raise ConfigError(key, 'must not be in .env.production: ' + FORBIDDEN[key])
            if key in REJECTED:
                raise ConfigError(key, 'refused for Mastodon %s: %s' % (line, REJECTED[key]))
            if key in NOT_FOR_PRODUCTION:
                raise ConfigError(key, 'refused for Mastodon %s: %s' % (line, NOT_FOR_PRODUCTION[key]))
            if setting is not None and key not in accepted:
                raise ConfigError(key, _other_line_reason(key, line))
            _dotenv.check_value(key, value)
            if setting is not None:
                if setting.generated:
                    _check_secret_format(key, value)
                elif value != '':
                    _check_type(key, setting, value, line)
        except (ConfigError, _dotenv.DotenvValueError) as exc:
            errors.append(ConfigError(key, exc.reason))
    if env.get('VAPID_PRIVATE_KEY') and env.get('VAPID_PUBLIC_KEY') and not errors_for(errors, 'VAPID_PRIVATE_KEY'):
        if vapid_public_from_private(env['VAPID_PRIVATE_KEY']) is None:
            errors.append(ConfigError('VAPID_PRIVATE_KEY', 'is not a valid P-256 private key'))
        elif _b64decode(vapid_public_from_private(env['VAPID_PRIVATE_KEY'])) != _b64decode(env['VAPID_PUBLIC_KEY']):
            errors.append(ConfigError('VAPID_PUBLIC_KEY', 'does not belong to VAPID_PRIVATE_KEY'))
    errors += _cross_checks(env, pgbouncer)
    for key in sorted(set(env) & set(DEPRECATED) & accepted):
        warnings.append('%s is the old name of %s (Mastodon warns about it at boot): rename it' % (key, DEPRECATED[key]))
    if components:
        for key in sorted(env):
            setting = SCHEMA.get(key)
            if setting is not None and not set(setting.components) & set(components):
                warnings.append('%s is not read by %s' % (key, ', '.join(components)))
    return errors, warnings


RAILS_COMPONENT = 'rails'
STREAMING_COMPONENT = 'streaming'


def component_env(env, component, version=DEFAULT_VERSION):
    """The subset of `env` that `component` reads: 'rails' (web, sidekiq and the migrations) or 'streaming'.

    Streaming gets only the keys that Mastodon's streaming/ reads (database, Redis, LOG_LEVEL,
    TRUSTED_PROXY_IP) plus NODE_EXTRA_CA_CERTS: no Rails secret. Rails gets the keys that web or sidekiq read,
    and the keys outside the schema (extra_env: Rails settings this schema does not know yet).
    """
    if component not in (RAILS_COMPONENT, STREAMING_COMPONENT):
        raise ValueError('component must be %s or %s, not %r' % (RAILS_COMPONENT, STREAMING_COMPONENT, component))
    accepted = accepted_keys(version)
    wanted = (STREAMING,) if component == STREAMING_COMPONENT else _RAILS
    subset = {}
    for key, value in env.items():
        setting = SCHEMA.get(key)
        if setting is None:
            reads = component == RAILS_COMPONENT and key not in REFUSED
        else:
            reads = key in accepted and bool(set(setting.components) & set(wanted))
        if reads:
            subset[key] = value
    return subset


def errors_for(errors, key):
    return [e for e in errors if e.key == key]


def split_env(env):
    """(secret_env, config_env): what goes to a Kubernetes Secret and what to a ConfigMap (see is_secret)."""
    secret_env = {}
    config_env = {}
    for key, value in env.items():
        (secret_env if is_secret(key, value) else config_env)[key] = value
    return secret_env, config_env


def render(env):
    header = ['Mastodon configuration, written by fediops.mastodon.mastodon_env. Do not edit by hand:',
              'changes are overwritten on the next run. Values are quoted so that Ruby dotenv and node',
              'dotenv read them identically.']
    return _dotenv.render(env, header=header, sections=SECTIONS)


def masked(text, secret_keys):
    """`text` of a rendered file with the values of `secret_keys` replaced by ********."""
    lines = []
    for line in text.splitlines(True):
        key = line.split('=', 1)[0] if '=' in line and not line.startswith('#') else None
        if key in secret_keys:
            line = '%s=********\n' % key
        lines.append(line)
    return ''.join(lines)


def checksum(text):
    return hashlib.sha256(text.encode('utf-8')).hexdigest()
