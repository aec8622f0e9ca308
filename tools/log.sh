# Shared shell helpers, sourced (never copied) by run.sh, test.sh and egs/*/prepare.sh.

# Timestamped log line naming the calling script and line, on stderr.
log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

die() {
  log "error: $*"
  exit 1
}
