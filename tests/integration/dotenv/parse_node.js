'use strict';
// Parse a dotenv file with npm's dotenv (what Mastodon's streaming server uses) and print
// {"version": ..., "values": {...}} as JSON. dotenv.parse never expands variables or runs commands.
const fs = require('fs');
const dotenv = require('dotenv');
const version = require('dotenv/package.json').version;

const values = dotenv.parse(fs.readFileSync(process.argv[2]));
process.stdout.write(JSON.stringify({ version, values }) + '\n');
