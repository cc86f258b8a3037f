# frozen_string_literal: true

require_relative 'boot'

require 'rails'
require 'active_record/railtie'

Bundler.require(*Rails.groups)

# Mastodon's config/application.rb requires its ActiveRecord extensions the same way.
require_relative '../lib/active_record/database_tasks_extensions'
# What Debian's Rails 6.1 lacks of the Rails 8 that Mastodon 4.5/4.6 run (see the file).
require_relative '../lib/active_record/rails8_database_tasks'
# What Debian's Rails 6.1 lacks of Rails 7+: ActiveRecord::Encryption (see the file).
require_relative '../lib/active_record/rails7_encryption'

module Mastodon
  class Application < Rails::Application
    config.load_defaults 6.1
    config.eager_load = false
    config.active_record.schema_format = :ruby
    # Mastodon's config/environments/production.rb: no schema dump in production.
    config.active_record.dump_schema_after_migration = false
    config.logger = Logger.new($stdout)
    config.log_level = :warn
  end
end
