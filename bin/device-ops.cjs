#!/usr/bin/env node
// The device-ops CLI: runs the built code (npm install builds it via `prepare`).
// Node 22+ keeps compiled code between runs, which shortens every later start; Node 20 has no cache.
const { enableCompileCache } = require('node:module');
if (typeof enableCompileCache === 'function') enableCompileCache();
require('../dist/src/starter/cli/main.js');
