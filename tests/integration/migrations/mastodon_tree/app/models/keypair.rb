# frozen_string_literal: true

# Shaped after Mastodon 4.7's app/models/keypair.rb: a local account's federation signing key, its
# private half encrypted with the ActiveRecord encryption keys (line 25).
class Keypair < ApplicationRecord
  encrypts :private_key
end
