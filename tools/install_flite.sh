#!/usr/bin/env bash
# Install Flite 2.2 (CMU's small speech synthesiser, voices built from recorded speakers) into
# tools/flite/, for the demo corpus's second synthesiser (egs/demo/flite.py).
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
. "$root/tools/debian_unpack.sh"

# The libraries are found through LD_LIBRARY_PATH (egs/demo/flite.py sets it), not installed.
flite_runs() { LD_LIBRARY_PATH=$1/usr/lib/x86_64-linux-gnu "$1/usr/bin/flite" -lv >/dev/null; }

debian_unpack "Flite 2.2" "$root/tools/flite" flite_runs \
  "install Flite 2.2 with your package manager (apt install flite, brew install flite) and put it on PATH" \
  "pool/main/f/flite/flite_2.2-5_amd64.deb f4ce03470bf9974c2cb9cacd981e6be29339ef4c97cf994dd6fa3f90e6544db9" \
  "pool/main/f/flite/libflite1_2.2-5_amd64.deb bfa8c591f1b47730b30b372ec38e02918a1c9795eada67684e1746390ad2f061"
