#!/bin/sh
# npm run mutate [-- [--STRYKER-OPTION…] TARGET…]: StrykerJS over gateway/agent, trust, policy and mdn
# (docs/testing.md), one target after the other (each its own run, incremental file and report),
# niced and with one test runner: the machines have 2 cores shared with other engineers. Long: run it
# in the background. A TARGET is a folder (agent, trust, policy, mdn) or files of one, comma-separated
# (trust/name-binding.ts,trust/chain-validator.ts); options go to `stryker run` (e.g. --ignoreStatic).
set -eu
cd "$(dirname "$0")/.."
targets=""
options=""
for arg in "$@"; do
  case "$arg" in
    --*) options="$options $arg" ;;
    *) targets="$targets $arg" ;;
  esac
done
[ -n "$targets" ] || targets="agent trust policy mdn"
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)'; then
  echo "npm run mutate: StrykerJS 10 needs Node.js 22 or later (this is $(node --version)); put Node 24 first on PATH" >&2
  exit 1
fi
for target in $targets; do
  # The conformance tests read ../shared/vectors beside the repository; Stryker runs them in
  # .stryker-tmp/sandbox-*/, so the vectors are linked beside the sandboxes.
  if [ -d ../shared ]; then
    mkdir -p .stryker-tmp
    ln -sfn ../../shared .stryker-tmp/shared
  fi
  echo "== mutation testing of gateway/$target"
  # shellcheck disable=SC2086 # options are words
  HISP_MUTATE="$target" nice -n 19 npx stryker run stryker.config.mjs $options
done
