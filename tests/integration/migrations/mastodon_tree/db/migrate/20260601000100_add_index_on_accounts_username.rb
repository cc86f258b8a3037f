# frozen_string_literal: true

# ... and a unique index, which fails on a database holding duplicate user names (the tests' failing
# pre-deployment step).
class AddIndexOnAccountsUsername < ActiveRecord::Migration[6.1]
  def change
    add_index :accounts, :username, unique: true
  end
end
