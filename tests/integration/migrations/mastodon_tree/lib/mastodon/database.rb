# frozen_string_literal: true

# Mastodon's lib/mastodon/database.rb (lifted from GitLab), as in v4.5.15 / v4.6.5: line 31 is the
# presence test, so ANY value of SKIP_POST_DEPLOYMENT_MIGRATIONS (even `false`) leaves
# db/post_migrate out of the migration paths.
module Mastodon
  module Database
    def self.add_post_migrate_path_to_rails(force: false)
      return if ENV['SKIP_POST_DEPLOYMENT_MIGRATIONS'] && !force

      Rails.application.config.paths['db'].each do |db_path|
        path = Rails.root.join(db_path, 'post_migrate').to_s

        next if Rails.application.config.paths['db/migrate'].include?(path)

        Rails.application.config.paths['db/migrate'] << path

        # Rails memoizes migrations at certain points where it won't read the above
        # path just yet. As such we must also update the following list of paths.
        ActiveRecord::Migrator.migrations_paths << path
      end
    end
  end
end
