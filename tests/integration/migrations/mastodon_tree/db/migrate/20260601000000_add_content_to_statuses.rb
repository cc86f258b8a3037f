# frozen_string_literal: true

# The current release's pre-deployment migrations: a new column the new code reads (the old pods
# still read `text` during the rollout) ...
class AddContentToStatuses < ActiveRecord::Migration[6.1]
  def up
    add_column :statuses, :content, :text
    execute 'UPDATE statuses SET content = text'
  end

  def down
    remove_column :statuses, :content
  end
end
