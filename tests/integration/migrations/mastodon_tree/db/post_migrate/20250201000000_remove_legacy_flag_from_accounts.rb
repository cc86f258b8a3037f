# frozen_string_literal: true

# The previous release's post-deployment migration: run twice, it fails with PG::UndefinedColumn,
# as Mastodon's column removals do.
class RemoveLegacyFlagFromAccounts < ActiveRecord::Migration[6.1]
  def change
    remove_column :accounts, :legacy_flag, :boolean, null: false, default: false
  end
end
