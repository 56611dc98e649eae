#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers. Run as root (CI does) or with sudo.
# Issue 3 (agent): openssl, the peer of the `openssl cms` interop tests.
# Issue 4 (discovery): knot (an authoritative DNS server for the DCDT zone), slapd and ldap-utils
# (three OpenLDAP servers for the DCDT LDAP cases, `ldapsearch` for their readiness check); the
# test harness (test/helpers/dcdt-harness.ts) runs them as its own processes on loopback, from a
# temporary folder: it uses none of the system services these packages may install.
# Issue 5 (gateway): postfix (a downstream mail server that stores into Maildirs, a plain MTA that
# relays to the gateway with STARTTLS and SMTP AUTH, and smtp-sink, the fast SMTP/LMTP sink of the
# benchmark), swaks (the SMTP client the interop tests drive Postfix with) and libsasl2-modules
# (the cyrus PLAIN and LOGIN plugins the Postfix SMTP client needs for AUTH; only recommended by
# libsasl2-2, so --no-install-recommends would leave them out). test/helpers/postfix.ts runs each
# Postfix as a private instance (its own config, queue and data folders in a temporary folder,
# master(8) in the foreground, loopback ports only), never the system instance: with "No
# configuration" the package writes no /etc/postfix/main.cf and its init script starts nothing, so
# neither systemd nor a running service is needed (CI is a container).
# Issue 15 (API, documents): chromium, headless, driven by playwright-core (never a downloaded
# browser) to prove that a rendered C-CDA runs no script and sends no request; curl, to run the
# README's API examples as a user pastes them.
set -euo pipefail
# libnet-ssleay-perl and libio-socket-ssl-perl: swaks's STARTTLS (--tls), used to submit to hisp.
packages=(openssl ca-certificates knot slapd ldap-utils postfix swaks libsasl2-modules libnet-ssleay-perl libio-socket-ssl-perl chromium curl)
# Issue 15 (XDM): unzip, a second zip reader (`unzip -t`) for the XDM packages hisp writes.
packages+=(unzip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # slapd: install without questions and without a system directory (no database, so no daemon on
  # :389); the tests write their own configuration. Seeded before the install so debconf never asks.
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  # postfix: "No configuration" (no main.cf, no daemon on :25; the tests configure their own).
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  # A mirror that fails to update (an unsigned security suite, say) must not stop the install.
  $SUDO apt-get update -qq || echo "apt-get update reported errors; installing from the lists it has"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
openssl version
knotd --version
slapd -VV 2>&1 | sed -n 1p
postconf -d mail_version
swaks --version | head -1
chromium --version
