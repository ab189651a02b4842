#!/usr/bin/env bash
# Install sdk/web's npm packages exactly as package-lock.json pins them
# (esbuild and typescript to build the SDK; hls.js, mpegts.js and dashjs,
# the players the e2e browser tests load) and build the SDK bundle.
# Idempotent: skips npm ci while node_modules matches the lockfile.
set -euo pipefail
cd "$(dirname "$0")/../sdk/web"
stamp=node_modules/.lastmile-installed-lock.json
if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
	echo "install-web-deps: npm ci in sdk/web" >&2
	npm ci --no-audit --no-fund --loglevel=error
	cp package-lock.json "$stamp"
fi
npm run --silent build >/dev/null
