# frozen_string_literal: true

Rails.application.configure do
  config.eager_load = false
end
