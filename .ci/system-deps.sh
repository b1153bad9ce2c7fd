#!/usr/bin/env bash
# System packages the device-profiling tests need: an OpenSSH server (the ssh path is tested against a real sshd on
# loopback) and the adb client (the adb path is tested against the real client's "no device" behaviour); and what
# the Android app's Kotlin core is built and tested with (tests/test_android_core.py): a JDK, the JUnit 5 console
# launcher, JNA, org.json (Android's, as Debian packages it) and npm (which brings the Kotlin compiler).
# Idempotent and quiet: installs only what is missing; never starts a system service (the tests start their own sshd).
set -euo pipefail

need=()
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v adb >/dev/null 2>&1 || need+=(adb)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
[[ -f /usr/share/java/junit-platform-console-standalone.jar ]] || need+=(junit5)
[[ -f /usr/share/java/jna.jar ]] || need+=(libjna-java)
[[ -f /usr/share/java/com.android.json.jar ]] || need+=(libandroid-json-java)
command -v npm >/dev/null 2>&1 || need+=(npm)

# sshd run as root needs its privilege-separation folder (normally made by the service's start script).
if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
    mkdir -p /run/sshd && chmod 755 /run/sshd
fi

if [[ ${#need[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n "$0" "$@"
    fi
    echo "system-deps: need root to install: ${need[*]} (the ssh/adb/Android-core tests will skip without them)" >&2
    exit 0
fi

# Keep the package's maintainer scripts from starting a system-wide sshd on port 22: deny service starts
# for the duration of the install (the standard policy-rc.d hook), unless the machine already has a policy.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [[ $made_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || apt-get install -y -qq --no-install-recommends "${need[@]}"
mkdir -p /run/sshd && chmod 755 /run/sshd
echo "system-deps: installed ${need[*]}"
