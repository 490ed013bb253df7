#!/usr/bin/env bash
# Nightly backup of a folder to a dated archive, keeping the most recent N archives.
# Usage: backup.sh SOURCE_DIR DEST_DIR [KEEP]
set -euo pipefail

# Print a message with a timestamp to stderr.
log() {
  echo "[$(date '+%Y-%m-%d %H:%M:%S')] $*" >&2
}

# Create DEST/<name>-YYYYmmdd-HHMMSS.tar.gz from SOURCE and print its path.
make_archive() {
  local source="$1" dest="$2"
  local name archive
  name="$(basename "$source")"
  archive="$dest/${name}-$(date '+%Y%m%d-%H%M%S').tar.gz"
  tar -czf "$archive" -C "$(dirname "$source")" "$name"
  echo "$archive"
}

# Delete all but the KEEP newest archives for SOURCE in DEST.
prune_old() {
  local dest="$1" name="$2" keep="$3"
  ls -1t "$dest/${name}"-*.tar.gz 2>/dev/null | tail -n +"$((keep + 1))" | while read -r old; do
    log "removing $old"
    rm -f -- "$old"
  done
}

# Check that an archive can be read back; returns non-zero if it is corrupt.
verify_archive() {
  tar -tzf "$1" > /dev/null
}

main() {
  local source="${1:?source folder required}" dest="${2:?destination folder required}"
  local keep="${3:-7}"
  [[ -d "$source" ]] || { log "no such folder: $source"; exit 1; }
  mkdir -p "$dest"
  local archive
  archive="$(make_archive "$source" "$dest")"
  verify_archive "$archive" || { log "archive is corrupt: $archive"; exit 1; }
  log "created $archive ($(du -h "$archive" | cut -f1))"
  prune_old "$dest" "$(basename "$source")" "$keep"
}

main "$@"
