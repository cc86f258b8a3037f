# frozen_string_literal: true

# Version 2023_09_07_150100: the schema of Mastodon 4.2.0, below which lib/tasks/db.rake refuses
# a zero-downtime upgrade.
class CreateStatuses < ActiveRecord::Migration[6.1]
  def change
    create_table :statuses do |t|
      t.bigint :account_id, null: false
      t.text :text
      t.timestamps
    end
  end
end
