# frozen_string_literal: true

require 'base64'
require 'json'
require 'openssl'
require 'set'

# Debian 12 ships Rails 6.1, which has no ActiveRecord::Encryption; Mastodon 4.5-4.7 run Rails 8 and
# encrypt columns with it (4.7: app/models/keypair.rb:25, every local account's signing key). This is
# the part of Rails' API that the migration Jobs' key check relies on, on Rails 6.1, shaped after
# rails/rails activerecord/lib/active_record/encryption (not a copy):
#
# * `ActiveRecord::Encryption.configure(primary_key:, deterministic_key:, key_derivation_salt:)`, what
#   Mastodon's config/initializers/active_record_encryption.rb gives from ACTIVE_RECORD_ENCRYPTION_*;
# * `encrypts :attribute` on a model, listed in `Model.encrypted_attributes`;
# * the key: PBKDF2-HMAC-SHA256 of the primary key with the derivation salt, 2**16 iterations, 32 bytes
#   (ActiveSupport::KeyGenerator, as Rails' DerivedSecretKeyProvider); AES-256-GCM with a random IV;
#   the stored value a JSON message {"p": payload, "h": {"iv": ..., "at": ...}} (Base64);
# * reading an attribute that the configured key cannot decrypt raises
#   ActiveRecord::Encryption::Errors::Decryption (Rails' EncryptedAttributeType#deserialize).
module ActiveRecord
  module Encryption
    module Errors
      class Base < StandardError; end
      class Decryption < Base; end
      class Encryption < Base; end
      class Configuration < Base; end
    end

    Config = Struct.new(:primary_key, :deterministic_key, :key_derivation_salt)

    def self.config
      @config ||= Config.new
    end

    def self.configure(primary_key:, deterministic_key:, key_derivation_salt:, **_properties)
      config.primary_key = primary_key
      config.deterministic_key = deterministic_key
      config.key_derivation_salt = key_derivation_salt
    end

    def self.key
      unless config.primary_key.present? && config.key_derivation_salt.present?
        raise Errors::Configuration, 'Missing Active Record encryption credential: active_record_encryption.primary_key'
      end

      OpenSSL::PKCS5.pbkdf2_hmac(config.primary_key, config.key_derivation_salt, 2**16, 32, OpenSSL::Digest.new('SHA256'))
    end

    def self.encrypt(clear_text)
      cipher = OpenSSL::Cipher.new('aes-256-gcm').encrypt
      cipher.key = key
      iv = cipher.random_iv
      payload = cipher.update(clear_text.to_s) + cipher.final
      JSON.generate('p' => Base64.strict_encode64(payload),
                    'h' => { 'iv' => Base64.strict_encode64(iv), 'at' => Base64.strict_encode64(cipher.auth_tag) })
    end

    def self.decrypt(message)
      parsed = JSON.parse(message)
      cipher = OpenSSL::Cipher.new('aes-256-gcm').decrypt
      cipher.key = key
      cipher.iv = Base64.strict_decode64(parsed.fetch('h').fetch('iv'))
      cipher.auth_tag = Base64.strict_decode64(parsed.fetch('h').fetch('at'))
      cipher.update(Base64.strict_decode64(parsed.fetch('p'))) + cipher.final
    rescue OpenSSL::Cipher::CipherError, JSON::ParserError, KeyError, ArgumentError, TypeError
      raise Errors::Decryption
    end

    class EncryptedAttributeType < ActiveModel::Type::Value
      def deserialize(value)
        value.nil? ? nil : ActiveRecord::Encryption.decrypt(value)
      end

      def serialize(value)
        value.nil? ? nil : ActiveRecord::Encryption.encrypt(value)
      end
    end

    module EncryptableRecord
      extend ActiveSupport::Concern

      included do
        class_attribute :encrypted_attributes, instance_accessor: false
      end

      class_methods do
        def encrypts(*names, **_options)
          self.encrypted_attributes = Set.new(encrypted_attributes) + names.map(&:to_sym)
          names.each { |name| attribute name, EncryptedAttributeType.new }
        end
      end
    end
  end
end

ActiveSupport.on_load(:active_record) { include ActiveRecord::Encryption::EncryptableRecord }
