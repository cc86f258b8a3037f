# frozen_string_literal: true

# Mastodon's config/initializers/0_post_deployment_migrations.rb: post deployment migrations are
# included by default, unless SKIP_POST_DEPLOYMENT_MIGRATIONS is present (with any value).
Mastodon::Database.add_post_migrate_path_to_rails
