#!/usr/bin/env bash
# Fetches the King James Bible as plain text (Debian package bible-kjv, installed with apt-get when
# `bible` is missing) and converts it into byte-level token corpora for a GPT: the last 5% of the
# bytes for validation, the rest for training. Builds nothing: the dtrain binary comes from $DTRAIN
# (default build/launch/dtrain). Idempotent: a step whose output exists is skipped.
#   scripts/get-text.sh [OUT_DIR | --out-dir DIR]   (default: data/)
#     -> DIR/kjv.txt (about 4.4 MB), DIR/kjv-train.h5, DIR/kjv-val.h5
set -euo pipefail
out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) out_dir="${2:?--out-dir needs a directory}"; shift 2 ;;
    --out-dir=*) out_dir="${1#--out-dir=}"; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "get-text: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    *)
      if [ -n "$out_dir" ]; then echo "get-text: one OUT_DIR only (got '$out_dir' and '$1')" >&2; exit 2; fi
      out_dir="$1"; shift ;;
  esac
done
# OUT_DIR given on the command line is relative to the caller's directory; the default to the repository.
if [ -n "$out_dir" ]; then out_dir="$(realpath -m "$out_dir")"; fi
cd "$(dirname "$0")/.."
out_dir="${out_dir:-data}"
DTRAIN="${DTRAIN:-build/launch/dtrain}"

text="$out_dir/kjv.txt" train="$out_dir/kjv-train.h5" val="$out_dir/kjv-val.h5"
if [ -f "$train" ] && [ -f "$val" ]; then
  echo "get-text: $train and $val exist, nothing to do"
  exit 0
fi
if [ ! -x "$DTRAIN" ]; then
  echo "get-text: no dtrain binary at $DTRAIN (build first, or set DTRAIN=/path/to/dtrain)" >&2
  exit 1
fi

if [ ! -f "$text" ] && ! command -v bible > /dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo > /dev/null; then
      echo "get-text: installing bible-kjv needs root, and sudo is missing: run as root or install bible-kjv first" >&2
      exit 1
    fi
    SUDO="sudo"
  fi
  echo "get-text: installing bible-kjv"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends bible-kjv
fi

mkdir -p "$out_dir"
if [ ! -f "$text" ]; then
  echo "get-text: writing $text"
  bible -f gen1:1-rev22:21 > "$text.tmp"
  bytes=$(stat -c %s "$text.tmp")
  if [ "$bytes" -lt 4000000 ] || [ "$bytes" -gt 5000000 ]; then
    echo "get-text: bible wrote $bytes bytes to $text.tmp, expected about 4.4 MB (Genesis 1:1 to Revelation 22:21)" >&2
    exit 1
  fi
  mv "$text.tmp" "$text"
fi

"$DTRAIN" data convert --from text --input "$text" --out "$train" --val-fraction 0.05 --val-out "$val"
"$DTRAIN" data info "$train"
"$DTRAIN" data info "$val"
