# frozen_string_literal: true

# Parse a dotenv file with the installed Ruby dotenv gem and print {"version": ..., "values": {...}} as JSON.
# Command substitution is sandboxed: instead of running `$(...)`, the parser records it and the value gets a
# marker, so a value the writer should never have produced shows up as a mismatch instead of running a command.
require 'json'
require 'dotenv'
require 'dotenv/version'

module Dotenv
  module Substitutions
    module Command
      class << self
        def call(value, *_rest, **_opts)
          value.gsub(INTERPOLATED_SHELL_COMMAND) do |*|
            match = $LAST_MATCH_INFO
            if match[:backslash]
              match[0][1..]
            else
              $fediops_commands << match[0]
              "<<COMMAND NOT RUN: #{match[:cmd]}>>"
            end
          end
        end
      end
    end
  end
end

$fediops_commands = []
text = File.read(ARGV.fetch(0), mode: 'rb').force_encoding('UTF-8')
values = Dotenv::Parser.call(text)
puts JSON.generate({ 'version' => Dotenv::VERSION, 'values' => values, 'commands' => $fediops_commands })
