#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers. Run as root (CI does) or with sudo.
# Issue 3 (agent): openssl, the peer of the `openssl cms` interop tests.
# Issue 4 (discovery): knot (an authoritative DNS server for the DCDT zone), slapd and ldap-utils
# (three OpenLDAP servers for the DCDT LDAP cases, `ldapsearch` for their readiness check); the
# test harness (test/helpers/dcdt-harness.ts) runs them as its own processes on loopback, from a
# temporary folder: it uses none of the system services these packages may install.
# Later issues add their peers here (postfix, swaks).
set -euo pipefail
packages=(openssl ca-certificates knot slapd ldap-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # slapd: install without questions and without a system directory (no database, so no daemon on
  # :389); the tests write their own configuration. Seeded before the install so debconf never asks.
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  # A mirror that fails to update (an unsigned security suite, say) must not stop the install.
  $SUDO apt-get update -qq || echo "apt-get update reported errors; installing from the lists it has"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
openssl version
knotd --version
slapd -VV 2>&1 | sed -n 1p
