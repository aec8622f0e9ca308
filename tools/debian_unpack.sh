# Download pinned Debian packages and unpack them into a folder, without root (sourced, never run).
# Used by tools/install_flite.sh and tools/install_pico.sh, the demo's recorded-voice synthesisers.
#
#   debian_unpack NAME DEST CHECK ELSEWHERE "pool/path.deb SHA256" ...
#
# NAME is what the messages call the software; ELSEWHERE says how to install it where Debian's
# x86_64 packages do not run (another OS or CPU); CHECK is a command run with $1 = the unpacked root
# (before it is moved into DEST) that must succeed on this machine. The packages are checked
# against their pinned SHA-256, unpacked with dpkg-deb (or ar + tar) into a temporary folder
# beside DEST and renamed into place only when CHECK passes, so an interrupted or failed run
# leaves nothing a re-run would trust. DEST/.done marks a finished install: re-running does nothing.
debian_unpack() {
  local name=$1 dest=$2 check=$3 elsewhere=$4; shift 4
  local mirror=${DEBIAN_MIRROR:-https://deb.debian.org/debian}
  [ -f "$dest/.done" ] && return 0
  [ "$(uname -sm)" = "Linux x86_64" ] \
    || die "$name: this script unpacks Debian's x86_64 packages; on $(uname -sm) $elsewhere"
  command -v curl >/dev/null || die "installing $name needs curl"
  local tmp
  tmp=$(mktemp -d "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  local entry path sha file
  for entry in "$@"; do
    read -r path sha <<<"$entry"
    file=$tmp/$(basename "$path")
    curl -sSfL --retry 2 -o "$file" "$mirror/$path" \
      || die "could not download $mirror/$path (offline?): install $name with your package manager instead, or set DEBIAN_MIRROR"
    echo "$sha  $file" | sha256sum -c --quiet - >/dev/null 2>&1 \
      || die "$mirror/$path: SHA-256 differs from the pinned one; not unpacked"
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$file" "$tmp/root"
    else
      (cd "$tmp" && ar x "$file" data.tar.xz && mkdir -p root && tar -xJf data.tar.xz -C root && rm data.tar.xz)
    fi
  done
  "$check" "$tmp/root" || die "the unpacked $name does not run on this machine: install it with your package manager instead"
  rm -rf "$dest"
  mv "$tmp/root" "$dest"
  date -u +%FT%TZ >"$dest/.done"
  log "$name installed in $dest"
}
