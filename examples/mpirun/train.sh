#!/usr/bin/env bash
# dtrain with Open MPI's mpirun on the hosts of a hostfile: one rank per slot (= per GPU).
#
#   examples/mpirun/train.sh HOSTFILE [CONFIG.ini [--section.key=value ...]]
#
# HOSTFILE: see hostfile.example. TIME_LIMIT=23h (a `timeout` duration) stops training cleanly
# at that time: SIGUSR1 to mpirun, which forwards it to every rank; the ranks finish the step,
# rank 0 writes a checkpoint and all exit 0. Run the same command again to continue from the
# newest checkpoint (--resume auto). Never stop a run with SIGTERM to mpirun: Open MPI then kills
# the ranks before they can checkpoint. docs/hpc.md has the details.
set -euo pipefail
hostfile=${1:?usage: train.sh HOSTFILE [CONFIG.ini [--section.key=value ...]]}
config=${2:-configs/fmnist-mlp.ini}
shift $(( $# >= 2 ? 2 : 1 ))
DTRAIN=${DTRAIN:-$(command -v dtrain || echo build/launch/dtrain)}  # the dtrain binary (or your own trainer)
DEVICE=${DTRAIN_DEVICE:-cuda}    # cuda: each rank takes GPU (local rank % visible GPUs); cpu for CPU hosts
MPIRUN=${MPIRUN:-mpirun}

# Ranks = the sum of the hostfile's slots (a host without slots= counts one).
ranks=$(awk '!/^[[:space:]]*(#|$)/ { n = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) n = substr($i, 7); s += n }
             END { print s + 0 }' "$hostfile")
[ "$ranks" -gt 0 ] || { echo "train.sh: no hosts in $hostfile" >&2; exit 2; }

# mpirun passes only the variables named with -x to remote ranks: forward NCCL's settings, e.g.
# NCCL_DEBUG=INFO, NCCL_SOCKET_IFNAME=ib0, NCCL_IB_DISABLE=1 (see docs/hpc.md).
forward=()
for name in $(compgen -e); do
  case "$name" in NCCL_*|OMP_NUM_THREADS|OPENBLAS_NUM_THREADS) forward+=(-x "$name") ;; esac
done

# --map-by slot fills each host's slots in order, so local ranks 0..slots-1 map to its GPUs;
# --bind-to none lets each rank's BLAS threads use the cores dtrain gives it (train.threads).
cmd=("$MPIRUN" -np "$ranks" --hostfile "$hostfile" --map-by slot --bind-to none "${forward[@]}"
     "$DTRAIN" train --config "$config" --train.device="$DEVICE" --resume=auto "$@")
echo "train.sh: ${ranks} ranks from ${hostfile}: ${cmd[*]}"
if [ -n "${TIME_LIMIT:-}" ]; then
  # --preserve-status: a run stopped at the limit exits with dtrain's status (0), not 124.
  exec timeout --signal=USR1 --kill-after=10m --preserve-status "$TIME_LIMIT" "${cmd[@]}"
fi
exec "${cmd[@]}"
