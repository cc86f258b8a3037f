# frozen_string_literal: true

# Rails 8's databases.rake: `db:prepare` is DatabaseTasks.prepare_all (lib/active_record/
# rails8_database_tasks.rb); Rails 6.1 defines it inline with other rules.
Rake::Task['db:prepare'].clear

namespace :db do
  desc 'Loads the schema into an uninitialized database (no schema_migrations), then migrates'
  task prepare: :load_config do
    ActiveRecord::Tasks::DatabaseTasks.prepare_all
  end
end
