# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Mastodon 4.3-4.5 settings: schema, validation and secret generation.

PRIVATE to this collection: no API guarantees.

Sources: docs.joinmastodon.org "Configuring your environment" (admin/config), Mastodon's
lib/mastodon/redis_configuration.rb and config/initializers/active_record_encryption.rb, the web-push gem
(VAPID key format) and Rails' `secret` / `db:encryption:init` tasks. Error messages name the key and never
show a value.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import re
import secrets as _random
import string

try:
    from urllib.parse import urlsplit, parse_qs
except ImportError:  # pragma: no cover
    from urlparse import urlsplit, parse_qs  # type: ignore[no-redef]

from ansible_collections.fediops.mastodon.plugins.module_utils import _dotenv

WEB, STREAMING, SIDEKIQ = 'web', 'streaming', 'sidekiq'
COMPONENTS = (WEB, STREAMING, SIDEKIQ)
_RAILS = (WEB, SIDEKIQ)
_ALL = COMPONENTS
_STREAM_ONLY = (STREAMING,)

LOCALES = (
    'ar ast bg bn br ca co cs cy da de el en en-GB eo es es-AR es-MX et eu fa fi fo fr fr-CA fy ga gd gl he hi hr hu '
    'hy id ig io is it ja ka kab kk kn ko ku lt lv mk ml mr ms my nl nn no oc pa pl pt-BR pt-PT ro ru sc sco si sk '
    'sl sq sr sr-Latn sv ta te th tr tt uk ur vi zgh zh-CN zh-HK zh-TW'
).split()
SSLMODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')
PGBOUNCER_PORT = 25061  # DigitalOcean's managed PgBouncer connection pools listen here


class Setting(object):
    """One key of the schema."""

    def __init__(self, kind='str', components=_RAILS, secret=False, choices=None, schemes=None, minimum=None,
                 maximum=None, section='Other', generated=False):
        self.kind = kind
        self.components = components
        self.secret = secret
        self.choices = choices
        self.schemes = schemes
        self.minimum = minimum
        self.maximum = maximum
        self.section = section
        self.generated = generated


SCHEMA = {}
SECTIONS = []


def _section(title, entries):
    SECTIONS.append((title, [k for k, dummy in entries]))
    for key, setting in entries:
        setting.section = title
        SCHEMA[key] = setting


def _s(kind='str', components=_RAILS, **kwargs):
    return Setting(kind=kind, components=components, **kwargs)


_HTTP = ('http', 'https')
_REDIS = ('redis', 'rediss', 'unix')

_section('Federation', [
    ('LOCAL_DOMAIN', _s('domain', _ALL)),
    ('WEB_DOMAIN', _s('domain', _ALL)),
    ('ALTERNATE_DOMAINS', _s('domains')),
    ('AUTHORIZED_FETCH', _s('bool')),
    ('LIMITED_FEDERATION_MODE', _s('bool')),
    ('DISALLOW_UNAUTHENTICATED_API_ACCESS', _s('bool', _ALL)),
    ('ALLOWED_PRIVATE_ADDRESSES', _s()),
    ('SINGLE_USER_MODE', _s('bool')),
    ('DISABLE_AUTOMATIC_SWITCHING_TO_APPROVED_REGISTRATIONS', _s('bool')),
    ('DEFAULT_LOCALE', _s('enum', choices=LOCALES)),
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
    ('RAILS_LOG_TO_STDOUT', _s('bool')),
    ('LOG_LEVEL', _s('enum', _STREAM_ONLY, choices=('silly', 'verbose', 'info', 'http', 'warn', 'error', 'silent'))),
    ('TRUSTED_PROXY_IP', _s('str', (WEB, STREAMING))),
    ('LOCAL_HTTPS', _s('bool')),
    ('SKIP_POST_DEPLOYMENT_MIGRATIONS', _s('bool', (WEB,))),
    ('NODE_EXTRA_CA_CERTS', _s('path', _STREAM_ONLY)),
    ('PGSSLROOTCERT', _s('path', _RAILS)),
    ('FFMPEG_BINARY', _s('path')),
])
_section('Scaling', [
    ('WEB_CONCURRENCY', _s('int', (WEB,), minimum=0, maximum=256)),
    ('MAX_THREADS', _s('int', (WEB,), minimum=1, maximum=1024)),
    ('PERSISTENT_TIMEOUT', _s('int', (WEB,), minimum=1)),
    ('SIDEKIQ_CONCURRENCY', _s('int', (SIDEKIQ,), minimum=1, maximum=1024)),
    ('DB_POOL', _s('int', _ALL, minimum=1, maximum=1024)),
    ('PREPARED_STATEMENTS', _s('bool')),
    ('STREAMING_API_BASE_URL', _s('url', (WEB, STREAMING), schemes=('ws', 'wss'))),
    ('STREAMING_CLUSTER_NUM', _s('int', _STREAM_ONLY, minimum=1)),
    ('MAX_REQUEST_POOL_SIZE', _s('int', minimum=1)),
])
_section('PostgreSQL', [
    ('DB_HOST', _s('host', _ALL)),
    ('DB_PORT', _s('int', _ALL, minimum=1, maximum=65535)),
    ('DB_NAME', _s('str', _ALL)),
    ('DB_USER', _s('str', _ALL)),
    ('DB_PASS', _s('str', _ALL, secret=True)),
    ('DB_SSLMODE', _s('enum', _ALL, choices=SSLMODES)),
    ('DATABASE_URL', _s('url', _ALL, schemes=('postgres', 'postgresql'))),
    ('REPLICA_DB_HOST', _s('host')),
    ('REPLICA_DB_PORT', _s('int', minimum=1, maximum=65535)),
    ('REPLICA_DB_NAME', _s()),
    ('REPLICA_DB_USER', _s()),
    ('REPLICA_DB_PASS', _s(secret=True)),
    ('REPLICA_PREPARED_STATEMENTS', _s('bool')),
    ('REPLICA_DATABASE_URL', _s('url', schemes=('postgres', 'postgresql'))),
])
_redis = []
for _prefix, _comps in (('', _ALL), ('CACHE_', _RAILS), ('SIDEKIQ_', _RAILS)):
    _redis += [
        (_prefix + 'REDIS_HOST', _s('host', _comps)),
        (_prefix + 'REDIS_PORT', _s('int', _comps, minimum=1, maximum=65535)),
        (_prefix + 'REDIS_DB', _s('int', _comps, minimum=0)),
        (_prefix + 'REDIS_USER', _s('str', _comps)),
        (_prefix + 'REDIS_PASSWORD', _s('str', _comps, secret=True)),
        (_prefix + 'REDIS_URL', _s('url', _comps, schemes=_REDIS)),
        (_prefix + 'REDIS_SENTINEL_MASTER', _s('str', _comps)),
        (_prefix + 'REDIS_SENTINELS', _s('str', _comps)),
        (_prefix + 'REDIS_SENTINEL_PORT', _s('int', _comps, minimum=1, maximum=65535)),
    ]
_section('Redis', _redis + [
    ('REDIS_NAMESPACE', _s('str', _ALL)),
    ('CACHE_REDIS_NAMESPACE', _s()),
    ('REDIS_DRIVER', _s('enum', choices=('ruby', 'hiredis'))),
])
_section('Elasticsearch', [
    ('ES_ENABLED', _s('bool')),
    ('ES_PRESET', _s('enum', choices=('single_node_cluster', 'small_cluster', 'large_cluster'))),
    ('ES_HOST', _s('host_or_url', schemes=_HTTP)),
    ('ES_PORT', _s('int', minimum=1, maximum=65535)),
    ('ES_USER', _s()),
    ('ES_PASS', _s(secret=True)),
    ('ES_PREFIX', _s()),
    ('ES_CA_FILE', _s('path')),
])
_section('StatsD', [
    ('STATSD_ADDR', _s()),
    ('STATSD_NAMESPACE', _s()),
    ('STATSD_SIDEKIQ', _s('bool', (SIDEKIQ,))),
])
_section('E-mail', [
    ('SMTP_SERVER', _s('host')),
    ('SMTP_PORT', _s('int', minimum=1, maximum=65535)),
    ('SMTP_LOGIN', _s()),
    ('SMTP_PASSWORD', _s(secret=True)),
    ('SMTP_FROM_ADDRESS', _s()),
    ('SMTP_REPLY_TO', _s()),
    ('SMTP_DOMAIN', _s('host')),
    ('SMTP_DELIVERY_METHOD', _s('enum', choices=('smtp', 'sendmail', 'file'))),
    ('SMTP_AUTH_METHOD', _s('enum', choices=('plain', 'login', 'cram_md5', 'none'))),
    ('SMTP_CA_FILE', _s('path')),
    ('SMTP_OPENSSL_VERIFY_MODE', _s('enum', choices=('none', 'peer', 'client_once', 'fail_if_no_peer_cert'))),
    ('SMTP_ENABLE_STARTTLS_AUTO', _s('bool')),
    ('SMTP_ENABLE_STARTTLS', _s('enum', choices=('auto', 'always', 'never'))),
    ('SMTP_TLS', _s('bool')),
    ('SMTP_SSL', _s('bool')),
    ('SMTP_READ_TIMEOUT', _s('int', minimum=1)),
    ('SMTP_OPEN_TIMEOUT', _s('int', minimum=1)),
])
_section('File storage', [
    ('CDN_HOST', _s('url', schemes=_HTTP)),
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
    ('S3_OPEN_TIMEOUT', _s('int', minimum=1)),
    ('S3_READ_TIMEOUT', _s('int', minimum=1)),
    ('S3_FORCE_SINGLE_REQUEST', _s('bool')),
    ('S3_ENABLE_CHECKSUM_MODE', _s('bool')),
    ('S3_STORAGE_CLASS', _s()),
    ('S3_MULTIPART_THRESHOLD', _s('int', minimum=1)),
    ('S3_PERMISSION', _s()),
    ('S3_BATCH_DELETE_LIMIT', _s('int', minimum=1, maximum=1000)),
    ('S3_BATCH_DELETE_RETRY', _s('int', minimum=0)),
    ('CACHE_BUSTER_ENABLED', _s('bool')),
    ('CACHE_BUSTER_HTTP_METHOD', _s('enum', choices=('GET', 'PURGE'))),
    ('CACHE_BUSTER_SECRET_HEADER', _s()),
    ('CACHE_BUSTER_SECRET', _s(secret=True)),
])
_section('Limits and other', [
    ('EMAIL_DOMAIN_ALLOWLIST', _s()),
    ('EMAIL_DOMAIN_DENYLIST', _s()),
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
    ('ALLOW_UNSAFE_AUTH_PROVIDER_REATTACH', _s('bool')),
    ('OMNIAUTH_ONLY', _s('bool')),
    ('ONE_CLICK_SSO_LOGIN', _s('bool')),
    ('OIDC_ENABLED', _s('bool')),
    ('OIDC_CLIENT_SECRET', _s(secret=True)),
    ('LDAP_PASSWORD', _s(secret=True)),
    ('SWIFT_PASSWORD', _s(secret=True)),
])

# Set by the process or container, not read from the file (docs: "cannot be defined in dotenv files").
FORBIDDEN = {
    'RAILS_ENV': 'set it on the container/process: Rails reads it before it loads the dotenv file',
    'NODE_ENV': 'set it on the streaming container/process: it is read before the dotenv file',
    'PORT': 'set it per process (web 3000, streaming 4000): it is read before the dotenv file',
    'BIND': 'set it per process: it is read before the dotenv file',
    'SOCKET': 'set it per process: it is read before the dotenv file',
}
REQUIRED = ('LOCAL_DOMAIN', 'SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY',
            'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT',
            'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY')
GENERATED = ('SECRET_KEY_BASE', 'VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY',
             'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY', 'OTP_SECRET')
_SECRET_NAME_RE = re.compile(r'(PASSWORD|PASS|SECRET|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIALS?)(_|$)')
_HOST_RE = re.compile(r'\A(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?\Z')
_TRUE = ('true',)
_FALSE = ('false',)


class ConfigError(ValueError):
    """A validation error for one key. The message names the key and never contains its value."""

    def __init__(self, key, reason):
        self.key = key
        self.reason = reason
        super(ConfigError, self).__init__('%s: %s' % (key, reason))


def suggest(key, candidates):
    matches = difflib.get_close_matches(key.upper(), list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def to_text(key, value):
    """Normalise a YAML value (bool, int, float, str) to the string Mastodon reads."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise ConfigError(key, 'must be a string, number or boolean, not %s' % type(value).__name__)


def _check_type(key, setting, value):
    kind = setting.kind
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
            raise ConfigError(key, 'must be one of %s' % ', '.join(setting.choices))
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
    import ipaddress
    try:
        ipaddress.ip_address(value.strip('[]'))
        return True
    except ValueError:
        return False


def _check_url(key, schemes, value):
    try:
        parts = urlsplit(value)
        dummy = parts.port
    except ValueError:
        raise ConfigError(key, 'is not a valid URL')
    if parts.scheme not in schemes:
        raise ConfigError(key, 'must be a URL with scheme %s' % ' or '.join('%s://' % s for s in schemes))
    if parts.scheme != 'unix' and not parts.hostname:
        raise ConfigError(key, 'URL has no host')


def url_has_password(value):
    try:
        return bool(urlsplit(value).password)
    except ValueError:
        return False


def is_secret(key, value=''):
    """Whether a key/value belongs in the Kubernetes Secret rather than the ConfigMap."""
    setting = SCHEMA.get(key)
    if setting is not None and setting.secret:
        return True
    if key.endswith('_URL') and url_has_password(value):
        return True
    return setting is None and bool(_SECRET_NAME_RE.search(key))


def _truthy(env, key):
    return env.get(key) == 'true'


def _port_of(env, url_key, port_key):
    if env.get(url_key):
        try:
            return urlsplit(env[url_key]).port
        except ValueError:
            return None
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
    """Turn the user's dicts into one {KEY: text} dict; returns (values, errors). Unknown/forbidden keys are errors."""
    values = {}
    errors = []
    for source, data in (('env', env or {}), ('extra_env', extra_env or {})):
        for key in sorted(data, key=str):
            key_text = str(key)
            if key_text in FORBIDDEN:
                errors.append(ConfigError(key_text, 'must not be in .env.production: ' + FORBIDDEN[key_text]))
                continue
            if source == 'env' and key_text not in SCHEMA:
                hint = suggest(key_text, SCHEMA)
                reason = 'unknown Mastodon setting'
                reason += ' (did you mean %s?)' % hint if hint else ''
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


def validate(env, pgbouncer=None, components=None):
    """Validate a complete {KEY: text} env (secrets included). Returns (errors, warnings); nothing raises."""
    errors = []
    warnings = []
    for key in REQUIRED:
        if not env.get(key):
            errors.append(ConfigError(key, 'is required'))
    for key in sorted(env):
        value = env[key]
        setting = SCHEMA.get(key)
        try:
            _dotenv.check_value(key, value)
            if setting is not None:
                if setting.generated:
                    _check_secret_format(key, value)
                elif value != '':
                    _check_type(key, setting, value)
        except (ConfigError, _dotenv.DotenvValueError) as exc:
            errors.append(ConfigError(key, exc.reason))
    if env.get('VAPID_PRIVATE_KEY') and env.get('VAPID_PUBLIC_KEY') and not errors_for(errors, 'VAPID_PRIVATE_KEY'):
        if vapid_public_from_private(env['VAPID_PRIVATE_KEY']) is None:
            errors.append(ConfigError('VAPID_PRIVATE_KEY', 'is not a valid P-256 private key'))
        elif _b64decode(vapid_public_from_private(env['VAPID_PRIVATE_KEY'])) != _b64decode(env['VAPID_PUBLIC_KEY']):
            errors.append(ConfigError('VAPID_PUBLIC_KEY', 'does not belong to VAPID_PRIVATE_KEY'))
    errors += _cross_checks(env, pgbouncer)
    if components:
        for key in sorted(env):
            setting = SCHEMA.get(key)
            if setting is not None and not set(setting.components) & set(components):
                warnings.append('%s is not read by %s' % (key, ', '.join(components)))
    return errors, warnings


def errors_for(errors, key):
    return [e for e in errors if e.key == key]


def split_env(env):
    """(secret_env, config_env): what goes to a Kubernetes Secret and what to a ConfigMap."""
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
