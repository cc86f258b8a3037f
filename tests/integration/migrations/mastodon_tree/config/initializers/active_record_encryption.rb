# frozen_string_literal: true

# Mastodon's config/initializers/active_record_encryption.rb (4.5-4.7): boot aborts without the three
# ACTIVE_RECORD_ENCRYPTION_* variables, and gives them to Rails' encryption ("Do not change the secrets
# once they are set", line 25). Here on the tree's Rails 6.1 stand-in (lib/active_record/rails7_encryption.rb).
%w(
  ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY
  ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT
  ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY
).each do |key|
  ENV.fetch(key) do
    abort "Mastodon now requires ActiveRecord encryption keys: #{key} is missing"
  end
end

ActiveRecord::Encryption.configure(
  primary_key: ENV.fetch('ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY'),
  deterministic_key: ENV.fetch('ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY'),
  key_derivation_salt: ENV.fetch('ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT')
)
