#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
import('../dist/gateway/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  console.error(err && err.code === 'ERR_MODULE_NOT_FOUND' ? 'hisp: not built; run `npm install` (or `npm run build`) first' : err);
  process.exit(70);
});
