# frozen_string_literal: true

# Mastodon's db/seeds/02_instance_actor.rb creates the instance actor (account id -99) on a fresh
# install; `db:prepare` runs the seeds after loading the schema.
ActiveRecord::Base.connection.execute(<<~SQL.squish)
  INSERT INTO accounts (id, username, display_name, created_at, updated_at)
  VALUES (-99, 'mastodon.internal', '', now(), now()) ON CONFLICT (id) DO NOTHING
SQL
