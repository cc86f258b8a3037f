// Connect as Mastodon's streaming server does: .env.production loaded with dotenv, Postgres through `pg`
// with the `ssl` option derived from DB_SSLMODE (streaming/database.js:85-97: any mode but disable/no-verify ->
// `ssl: {}`, verified against node's store + NODE_EXTRA_CA_CERTS; PGSSLROOTCERT ignored), Redis through
// `ioredis` from REDIS_URL with only {host, port, db, password} (streaming/redis.js:16-41 configFromEnv,
// :48-60 createClient `new Redis(redisUrl, redisParams)`: no CA option, node's store). NODE_EXTRA_CA_CERTS
// comes from the process environment, as in the pod (node reads it once at start-up; dotenv is too late).
//
// usage: node check_node.js ENV_FILE TARGET...   (TARGET: pg | redis)
// FEDIOPS_RESOLVE='{"name": "127.0.0.1"}' maps DNS names to loopback (a resolver shim in place of /etc/hosts).
// Prints {"version": {...}, "results": {TARGET: {"ok": bool, "code": ..., "message": ...}}}.
'use strict';

const dns = require('dns');

const resolve = JSON.parse(process.env.FEDIOPS_RESOLVE || '{}');
const realLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  } else if (typeof options === 'number') {
    options = { family: options };
  }
  const address = resolve[String(hostname).toLowerCase()];
  if (address === undefined) {
    return realLookup.call(dns, hostname, options, callback);
  }
  if (options && options.all) {
    return process.nextTick(callback, null, [{ address, family: 4 }]);
  }
  return process.nextTick(callback, null, address, 4);
};

const dotenv = require('dotenv');
const pg = require('pg');
const { Redis } = require('ioredis');

function parseIntFromEnvValue(value, defaultValue) {
  if (typeof value === 'string' && value.length > 0) {
    const parsed = parseInt(value, 10);
    if (isNaN(parsed)) throw new Error(`Invalid integer value ${value}`);
    return parsed;
  }
  return defaultValue;
}

// streaming/database.js configFromEnv(env, 'production') without DATABASE_URL.
function pgConfigFromEnv(env) {
  const baseConfig = {
    user: env.DB_USER || 'mastodon',
    password: env.DB_PASS || '',
    database: env.DB_NAME || 'mastodon_production',
    host: env.DB_HOST || 'localhost',
    port: parseIntFromEnvValue(env.DB_PORT, 5432),
  };
  if (env.DB_SSLMODE) {
    switch (env.DB_SSLMODE) {
      case 'disable':
      case '':
        baseConfig.ssl = false;
        break;
      case 'no-verify':
        baseConfig.ssl = { rejectUnauthorized: false };
        break;
      default:
        baseConfig.ssl = {};
        break;
    }
  }
  return {
    ...baseConfig,
    max: parseIntFromEnvValue(env.DB_POOL, 10),
    connectionTimeoutMillis: 15000,
    application_name: '',
  };
}

// streaming/redis.js configFromEnv + createClient: these four options and nothing else. ioredis would
// reconnect forever after an error; checkRedis ends the check at the first error instead (disconnect).
function redisClientFromEnv(env) {
  const redisParams = {
    host: env.REDIS_HOST || '127.0.0.1',
    port: parseIntFromEnvValue(env.REDIS_PORT, 6379),
    db: parseIntFromEnvValue(env.REDIS_DB, 0),
    password: env.REDIS_PASSWORD || undefined,
  };
  if (typeof env.REDIS_URL === 'string') {
    return new Redis(env.REDIS_URL, redisParams);
  }
  return new Redis(redisParams);
}

function failure(err) {
  return { ok: false, code: err && err.code ? String(err.code) : null, message: String(err && err.message || err) };
}

async function checkPg() {
  const pool = new pg.Pool(pgConfigFromEnv(process.env));
  pool.on('error', () => {});
  try {
    const res = await pool.query('SELECT current_database() AS db');
    return { ok: true, detail: res.rows[0].db };
  } catch (err) {
    return failure(err);
  } finally {
    await pool.end().catch(() => {});
  }
}

function checkRedis() {
  return new Promise((done) => {
    let finished = false;
    const client = redisClientFromEnv(process.env);
    const finish = (result) => {
      if (finished) return;
      finished = true;
      client.disconnect();
      done(result);
    };
    client.on('error', (err) => finish(failure(err)));
    client.ping().then((pong) => finish({ ok: pong === 'PONG', detail: pong }), (err) => finish(failure(err)));
  });
}

async function main() {
  const [envFile, ...targets] = process.argv.slice(2);
  dotenv.config({ path: envFile, quiet: true });
  const results = {};
  for (const target of targets) {
    results[target] = target === 'pg' ? await checkPg() : await checkRedis();
  }
  const version = {
    node: process.version,
    pg: require('pg/package.json').version,
    ioredis: require('ioredis/package.json').version,
    dotenv: require('dotenv/package.json').version,
  };
  process.stdout.write(JSON.stringify({ version, results }) + '\n');
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(2);
});
