#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers. Run as root (CI does) or with sudo.
# Issue 3 (agent): openssl, the peer of the `openssl cms` interop tests.
# Later issues add their peers here (a DNS server, slapd, postfix, swaks).
set -euo pipefail
packages=(openssl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # A mirror that fails to update (an unsigned security suite, say) must not stop the install.
  $SUDO apt-get update -qq || echo "apt-get update reported errors; installing from the lists it has"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
openssl version
