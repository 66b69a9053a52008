#!/usr/bin/env node
// The device-ops CLI: runs the built code (npm install builds it via `prepare`).
require('../dist/src/starter/main.js');
