#!/bin/sh
# npm run mutate [-- FOLDER…]: StrykerJS over gateway/agent, trust, policy and mdn (docs/testing.md),
# one folder after the other (each its own run, incremental file and report), niced and with one
# test runner: the machines have 2 cores shared with other engineers. Long: run it in the background.
set -eu
cd "$(dirname "$0")/.."
folders="${*:-agent trust policy mdn}"
# The conformance tests read ../shared/vectors beside the repository; Stryker runs them in
# .stryker-tmp/sandbox-*/, so the vectors are linked beside the sandboxes.
for folder in $folders; do
  if [ -d ../shared ]; then
    mkdir -p .stryker-tmp
    ln -sfn ../../shared .stryker-tmp/shared
  fi
  echo "== mutation testing of gateway/$folder"
  HISP_MUTATE_FOLDER="$folder" nice -n 19 npx stryker run stryker.config.mjs
done
