#!/usr/bin/env bash
# Install Flite 2.2 (CMU's small speech synthesiser, voices built from recorded speakers) into
# tools/flite/, for the demo corpus's held-out-synthesiser test set (egs/demo/heldout.py).
#
#   tools/install_flite.sh            # tools/flite/usr/bin/flite (no root, nothing system-wide)
#
# Pinned: Debian bookworm's flite 2.2-5 and libflite1 2.2-5 for x86_64, checked by SHA-256, unpacked
# with dpkg-deb (or ar + tar) rather than installed, so it works without root on any x86_64 Linux.
# Elsewhere, install Flite 2.2 with your package manager (apt install flite, brew install flite):
# egs/demo/flite.py uses a flite on PATH when tools/flite has none. Re-running does nothing once done.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/tools/log.sh"
dest=$root/tools/flite
mirror=${DEBIAN_MIRROR:-https://deb.debian.org/debian}
packages=(
  "pool/main/f/flite/flite_2.2-5_amd64.deb f4ce03470bf9974c2cb9cacd981e6be29339ef4c97cf994dd6fa3f90e6544db9"
  "pool/main/f/flite/libflite1_2.2-5_amd64.deb bfa8c591f1b47730b30b372ec38e02918a1c9795eada67684e1746390ad2f061"
)
[ -f "$dest/.done" ] && exit 0
[ "$(uname -sm)" = "Linux x86_64" ] || die "tools/install_flite.sh unpacks Debian's x86_64 packages; on $(uname -sm) install Flite 2.2 with your package manager (apt install flite, brew install flite) and put it on PATH"
command -v curl >/dev/null || die "tools/install_flite.sh needs curl to download Flite"
tmp=$(mktemp -d "$root/tools/.flite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for entry in "${packages[@]}"; do
  read -r path sha <<<"$entry"
  file=$tmp/$(basename "$path")
  curl -sSfL --retry 2 -o "$file" "$mirror/$path" \
    || die "could not download $mirror/$path (offline?): install Flite 2.2 with your package manager instead, or set DEBIAN_MIRROR"
  echo "$sha  $file" | sha256sum -c --quiet - >/dev/null 2>&1 || die "$mirror/$path: SHA-256 differs from the pinned one; not unpacked"
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$file" "$tmp/root"
  else
    (cd "$tmp" && ar x "$file" data.tar.xz && mkdir -p root && tar -xJf data.tar.xz -C root && rm data.tar.xz)
  fi
done
# The libraries are found through LD_LIBRARY_PATH (egs/demo/flite.py sets it), not installed.
LD_LIBRARY_PATH=$tmp/root/usr/lib/x86_64-linux-gnu "$tmp/root/usr/bin/flite" -lv >/dev/null \
  || die "the unpacked flite does not run on this machine: install Flite 2.2 with your package manager instead"
rm -rf "$dest"
mv "$tmp/root" "$dest"
date -u +%FT%TZ >"$dest/.done"
log "Flite 2.2-5 installed in $dest"
