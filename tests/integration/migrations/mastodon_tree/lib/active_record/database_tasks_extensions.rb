# frozen_string_literal: true

# Mastodon's lib/active_record/database_tasks_extensions.rb since mastodon/mastodon#34089 (March
# 2025, so Mastodon 4.4 and later, 4.5 and 4.6 included): whenever the schema is loaded from
# db/schema.rb, the post-deployment migrations are put on the paths first, even with
# SKIP_POST_DEPLOYMENT_MIGRATIONS set, so that the schema load records them as run. (Mastodon also
# defines its timestamp_id function here; this tree has no Snowflake ids.) The tests delete this
# file to model Mastodon 4.3 and earlier.
require_relative '../mastodon/database'

module ActiveRecord
  module Tasks
    module DatabaseTasks
      original_load_schema = instance_method(:load_schema)

      define_method(:load_schema) do |db_config, *args|
        Mastodon::Database.add_post_migrate_path_to_rails(force: true)

        original_load_schema.bind_call(self, db_config, *args)
      end
    end
  end
end
