#!/usr/bin/env bash
# Fetches Fashion-MNIST (Debian package dataset-fashion-mnist, installed with apt-get when missing)
# and converts its train and test splits into dtrain dataset files. Builds nothing: the dtrain
# binary comes from $DTRAIN (default build/launch/dtrain). Idempotent.
#   scripts/get-data.sh [--out-dir DIR]     (default: data/) -> DIR/fmnist-train.h5, DIR/fmnist-test.h5
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=data
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) out_dir="${2:?--out-dir needs a directory}"; shift 2 ;;
    --out-dir=*) out_dir="${1#--out-dir=}"; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "get-data: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
DTRAIN="${DTRAIN:-build/launch/dtrain}"
if [ ! -x "$DTRAIN" ]; then
  echo "get-data: no dtrain binary at $DTRAIN (build first, or set DTRAIN=/path/to/dtrain)" >&2
  exit 1
fi

pkg=dataset-fashion-mnist
src=/usr/share/datasets/fashion-mnist
if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "get-data: installing $pkg"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "$pkg"
fi

mkdir -p "$out_dir"
for split in train:train test:t10k; do
  name="${split%%:*}" prefix="${split##*:}"
  "$DTRAIN" data convert --from idx \
    --images "$src/$prefix-images-idx3-ubyte.gz" --labels "$src/$prefix-labels-idx1-ubyte.gz" \
    --num-classes 10 --out "$out_dir/fmnist-$name.h5"
done
"$DTRAIN" data info "$out_dir/fmnist-test.h5"
