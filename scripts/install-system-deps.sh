#!/usr/bin/env bash
# Install the Debian packages the tests use, when missing: kcat (the e2e tests
# list the embedded broker's topics with it, as a user would) and ffmpeg (the
# outside RTMP publisher and HTTP-FLV/HLS reader the media/ code is tested
# against: ffmpeg and ffprobe) and prometheus-alertmanager (the real
# Alertmanager the alert e2e test delivers through), chromium (the browser
# the e2e browser tests play our edges in) and nodejs with npm (which
# install the pinned player packages and build sdk/web).
set -euo pipefail
need=()
command -v kcat >/dev/null || need+=(kcat)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v chromium >/dev/null || need+=(chromium)
command -v npm >/dev/null || need+=(nodejs npm)
if ((${#need[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	SUDO=sudo
else
	SUDO=
fi
echo "install-system-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
