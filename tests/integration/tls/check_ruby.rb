# frozen_string_literal: true

# Connect as Rails and Sidekiq do: .env.production loaded with dotenv, Postgres through libpq (`pg` gem) with
# sslmode from DB_SSLMODE (config/database.yml:7) and the CA from PGSSLROOTCERT (read by libpq itself), Redis
# through redis-rb built with ONLY {url:, driver: :ruby} (lib/mastodon/redis_configuration.rb:47,60): Mastodon
# passes no CA, so `rediss://` is verified against OpenSSL's default store (SSL_CERT_FILE steers it in tests).
#
# usage: ruby check_ruby.rb ENV_FILE TARGET...   (TARGET: pg | redis)
# Name resolution: PGHOSTADDR=127.0.0.1 for libpq (it then verifies the certificate against DB_HOST), and
# FEDIOPS_RESOLVE='{"name": "127.0.0.1"}' for redis-rb (a Socket.getaddrinfo shim in place of /etc/hosts).
# Prints {"version": {...}, "results": {TARGET: {"ok": bool, "code": ..., "message": ...}}}.
require 'json'
require 'openssl'
require 'socket'
require 'dotenv'
require 'pg'
require 'redis'

RESOLVE = JSON.parse(ENV.fetch('FEDIOPS_RESOLVE', '{}'))

# Resolver shim: names in FEDIOPS_RESOLVE resolve to the given address; TLS still verifies the name.
module FediopsResolve
  def getaddrinfo(host, *rest, **kw)
    address = RESOLVE[host.to_s.downcase]
    super(address || host, *rest, **kw)
  end
end
Socket.singleton_class.prepend(FediopsResolve)

def failure(err)
  { ok: false, code: err.class.name, message: err.message.to_s.strip }
end

def check_pg
  # What ActiveRecord's postgresql adapter hands to PG.connect from config/database.yml.
  conn = PG.connect(host: ENV['DB_HOST'], port: ENV['DB_PORT'], dbname: ENV['DB_NAME'], user: ENV['DB_USER'],
                    password: ENV['DB_PASS'], sslmode: ENV.fetch('DB_SSLMODE', 'prefer'), connect_timeout: 10)
  begin
    { ok: true, detail: conn.exec('SELECT current_database()').getvalue(0, 0), ssl: conn.ssl_in_use? }
  ensure
    conn.close
  end
rescue PG::Error => e
  failure(e)
end

def check_redis
  # Exactly Mastodon's options: no ssl_params, no timeouts (lib/mastodon/redis_configuration.rb:47,60).
  redis = Redis.new(url: ENV.fetch('REDIS_URL'), driver: :ruby)
  begin
    pong = redis.ping
    { ok: pong == 'PONG', detail: pong }
  ensure
    redis.close
  end
rescue StandardError => e
  failure(e)
end

Dotenv.load(ARGV.fetch(0))
results = {}
ARGV.drop(1).each do |target|
  results[target] = target == 'pg' ? check_pg : check_redis
end
version = { ruby: RUBY_VERSION, pg: PG::VERSION, libpq: PG.library_version, redis: Redis::VERSION,
            openssl: OpenSSL::OPENSSL_LIBRARY_VERSION }
puts JSON.generate(version: version, results: results)
