# frozen_string_literal: true

class CreateAccounts < ActiveRecord::Migration[6.1]
  def change
    create_table :accounts do |t|
      t.string :username, null: false
      t.boolean :legacy_flag, null: false, default: false
      t.timestamps
    end
  end
end
