# frozen_string_literal: true

# Debian 12 ships Rails 6.1, whose `db:prepare` loads the schema only when the database does not
# exist. Mastodon 4.5 and 4.6 run Rails 8, whose `db:prepare` (ActiveRecord::Tasks::DatabaseTasks
# #prepare_all and #initialize_database in rails/rails activerecord/lib/active_record/tasks/
# database_tasks.rb) decides on the schema_migrations table instead: missing -> load db/schema.rb
# (creating the database first if it does not exist), then migrate whatever is pending, then seed
# if the schema was loaded. This is that decision, on Rails 6.1's API, so that the tree behaves
# like Mastodon's Rails on an existing, empty database (DigitalOcean creates the database).
module ActiveRecord
  module Tasks
    module DatabaseTasks
      def prepare_all
        seed = false
        ActiveRecord::Base.configurations.configs_for(env_name: env).each do |db_config|
          ActiveRecord::Base.establish_connection(db_config)
          seed = true if initialize_database(db_config)
          migrate
        end
        ActiveRecord::Base.establish_connection
        load_seed if seed
      end

      def initialize_database(db_config)
        begin
          already_initialized = ActiveRecord::Base.connection.schema_migration.table_exists?
        rescue ActiveRecord::NoDatabaseError
          create(db_config)
          retry
        end
        schema = dump_filename(db_config.name)
        load_schema(db_config, ActiveRecord::Base.schema_format, nil) if !already_initialized && File.exist?(schema)
        !already_initialized
      end
    end
  end
end
