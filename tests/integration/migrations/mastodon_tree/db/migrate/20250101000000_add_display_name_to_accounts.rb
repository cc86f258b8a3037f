# frozen_string_literal: true

# The previous release's pre-deployment migration.
class AddDisplayNameToAccounts < ActiveRecord::Migration[6.1]
  def change
    add_column :accounts, :display_name, :string, null: false, default: ''
  end
end
