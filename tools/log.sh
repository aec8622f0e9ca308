# Shared shell helpers, sourced (never copied) by run.sh, test.sh and egs/*/prepare.sh.

# _log DEPTH MESSAGE: timestamped line naming the file, line and function DEPTH calls up.
_log() {
  local d=$(( $1 + 1 )); shift
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[$d]##*/}:${BASH_LINENO[$((d - 1))]}:${FUNCNAME[$d]}) $*" >&2
}

log() { _log 1 "$@"; }

die() {
  _log 1 "error: $*"
  exit 1
}
