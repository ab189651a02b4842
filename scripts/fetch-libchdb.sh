#!/usr/bin/env bash
# Fetch libchdb.so (the in-process ClickHouse engine) into a per-user cache
# outside the repo, so clean clones and CI reuse one 559 MB copy.
#
# The linux-x64 library ships inside the npm package @chdb/lib-linux-x64-gnu;
# we `npm pack` it (no install, no node_modules) and keep only libchdb.so.
# Idempotent: exits at once when the library is already in place.
set -euo pipefail

CHDB_VERSION="${CHDB_VERSION:-26.5.3}"
NPM_PKG="@chdb/lib-linux-x64-gnu@${CHDB_VERSION}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/lastmile"
DEST_DIR="$CACHE_ROOT/chdb/$CHDB_VERSION"
DEST="$DEST_DIR/libchdb.so"

log() { printf 'fetch-libchdb: %s\n' "$*" >&2; }

if [[ -f "$DEST" ]]; then
	log "already present: $DEST"
	exit 0
fi

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) ;;
*)
	log "only linux x86_64 is packaged here (got $(uname -s)-$(uname -m))"
	exit 1
	;;
esac

command -v npm >/dev/null || { log "npm is required (apt-get install npm)"; exit 1; }
command -v tar >/dev/null || { log "tar is required"; exit 1; }

mkdir -p "$DEST_DIR"
# The temp dir lives inside the cache so the final mv is a same-filesystem
# rename, which is atomic: a reader never sees a half-written library.
TMP="$(mktemp -d "$CACHE_ROOT/.fetch-libchdb.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log "downloading $NPM_PKG (~166 MB) ..."
(cd "$TMP" && npm pack --silent "$NPM_PKG" >pack.out 2>pack.err) || {
	cat "$TMP/pack.err" >&2
	log "npm pack failed"
	exit 1
}
TGZ="$TMP/$(tail -n1 "$TMP/pack.out")"
[[ -f "$TGZ" ]] || TGZ="$(ls "$TMP"/*.tgz 2>/dev/null | head -n1)"
[[ -f "$TGZ" ]] || { log "npm pack produced no tarball"; exit 1; }

log "extracting libchdb.so (~559 MB) ..."
tar -xzf "$TGZ" -C "$TMP" package/libchdb.so
rm -f "$TGZ"
[[ -s "$TMP/package/libchdb.so" ]] || { log "libchdb.so missing from $TGZ"; exit 1; }

chmod 0755 "$TMP/package/libchdb.so"
mv -f "$TMP/package/libchdb.so" "$DEST"
log "installed $DEST"
