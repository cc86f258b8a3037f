# frozen_string_literal: true

# The current release's pre-deployment migrations: a table with an encrypted column (Mastodon 4.7's
# keypairs, app/models/keypair.rb).
class CreateKeypairs < ActiveRecord::Migration[6.1]
  def change
    create_table :keypairs do |t|
      t.bigint :account_id, null: false
      t.text :private_key
      t.text :public_key, null: false, default: ''
      t.timestamps
    end
  end
end
