#!/usr/bin/env bash
# Installs the official Node.js binary of one major version, with its headers, from the npm registry
# into a folder of its own (never into the project's dependencies), and prints the folder to use:
#
#   node24=$(bash scripts/install-node.sh 24 .ci/node24)
#   export PATH="$node24/bin:$PATH" npm_config_nodedir="$node24"
#
# The package node-linux-<arch> (x64, arm64) holds the nodejs.org build: bin/node and include/node.
# With npm_config_nodedir pointing at it, node-gyp builds native addons (better-sqlite3) against
# those headers, for that Node's ABI, without downloading anything from nodejs.org. npm itself is
# the machine's (npm 11 runs on Node 20.17+, 22.9+ and 24). A folder that already holds that major
# version is reused (a second local run costs nothing); CI_NODE_VERSION=24.22.3 pins an exact release.
set -euo pipefail
major=${1:?usage: install-node.sh MAJOR DIR}
prefix=${2:?usage: install-node.sh MAJOR DIR}
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-node.sh: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
package="node-linux-$arch"
version=${CI_NODE_VERSION:-$major}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
home="$prefix/node_modules/$package"
current() { "$home/bin/node" -p 'process.versions.node' 2>/dev/null || true; }
wanted_ok() {
  local v
  v=$(current)
  [ -n "$v" ] || return 1
  if [ "$version" = "$major" ]; then [ "${v%%.*}" = "$major" ]; else [ "$v" = "$version" ]; fi
}
if ! wanted_ok; then
  # Its own package.json, so that npm never looks at (or writes to) the project's.
  [ -f "$prefix/package.json" ] || echo '{ "private": true, "description": "Node.js for hisp CI (scripts/install-node.sh)" }' >"$prefix/package.json"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$package@$version" >&2
fi
wanted_ok || { echo "install-node.sh: $home/bin/node is not Node.js $version" >&2; exit 1; }
[ -f "$home/include/node/node_version.h" ] || { echo "install-node.sh: $package has no headers (include/node)" >&2; exit 1; }
echo "$home"
