#!/usr/bin/env bash
# Install SVOX Pico (the small synthesiser of Android's first text-to-speech, voices built from
# recorded speakers) into tools/pico/, for the demo corpus's held-out synthesiser (egs/demo/pico.py).
#
#   tools/install_pico.sh             # tools/pico/usr/lib/x86_64-linux-gnu/libttspico.so.0 + its voices
#
# Pinned: Debian bookworm's libttspico0 and libttspico-data 1.0+git20130326-13 (section non-free:
# SVOX's voice data comes without its sources), checked by SHA-256 and unpacked without root.
# egs/demo/pico.py calls the library through ctypes with the voice folder it was unpacked with,
# so Debian's pico2wave (which only reads /usr/share/pico) is not needed. Elsewhere, install
# libttspico with your package manager. Re-running does nothing once done.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/tools/log.sh"
. "$root/tools/debian_unpack.sh"

pico_runs() {
  "${PYTHON:-python3}" - "$1" <<'PY'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1] + "/usr/lib/x86_64-linux-gnu/libttspico.so.0")
memory, system = ctypes.create_string_buffer(2500000), ctypes.c_void_p()
sys.exit(lib.pico_initialize(memory, ctypes.c_uint32(len(memory)), ctypes.byref(system)) != 0)
PY
}

debian_unpack "SVOX Pico" "$root/tools/pico" pico_runs \
  "install libttspico with your package manager (apt install libttspico0 libttspico-data)" \
  "pool/non-free/s/svox/libttspico0_1.0+git20130326-13_amd64.deb fc9e4dbc664a7756ae73e83633d9987e6b0f2fd5248f04def8beb8de6df2cd02" \
  "pool/non-free/s/svox/libttspico-data_1.0+git20130326-13_all.deb 25c9904cef2471302634c03deff3ca96b588e22ea94929dda72d940584a3b84a"
