# frozen_string_literal: true

# The current release's post-deployment migration: the old column goes once no pod reads it.
class RemoveTextFromStatuses < ActiveRecord::Migration[6.1]
  def change
    remove_column :statuses, :text, :text
  end
end
