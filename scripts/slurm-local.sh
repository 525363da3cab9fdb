#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, to try and test examples/slurm/train.sbatch without a
# real cluster. Installs Slurm and munge from Debian (apt-get), writes a slurm.conf for this
# machine (select/cons_tres, proctrack/linuxproc, MpiDefault=pmix, its CPUs and memory, a debug
# partition with oversubscription) into a state directory, starts munged, slurmctld and slurmd
# there (no systemd needed), then checks:
#   1. `sbatch --wait` of examples/slurm/train.sbatch on 2 tasks trains 50 steps and exits 0;
#   2. the time-limit path: USR1 to the batch script -> checkpoint -> requeue -> resumed run;
#   3. srun --mpi=pmix forms one 2-rank MPI world; srun --mpi=none (SLURM_* variables only) runs
#      single-rank launches and refuses a 2-task training with a clear error instead of hanging.
# Stops exactly the daemons it started, also on failure. Idempotent; run it as root (the daemons
# are system daemons; e.g. `sudo scripts/slurm-local.sh`).
#
#   scripts/slurm-local.sh [--state-dir DIR] [--nodes N] [--keep-running] [--skip-requeue]
#   scripts/slurm-local.sh --stop [--state-dir DIR]     (a cluster left by --keep-running)
#
# --nodes N (default 1) runs N slurmd on this machine as N nodes (Debian's Slurm is built with
# multiple-slurmd support) and spreads the 2 tasks of the batch job over 2 of them.
# DTRAIN=path/to/dtrain (default build/launch/dtrain, built when missing). data/fmnist-*.h5 are
# made with scripts/get-data.sh when missing. --keep-running leaves the cluster up for your own
# sbatch/srun (it prints how to use it); --stop or the next run cancels its jobs and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
state=/tmp/dtrain-slurm-local
nodes=1
keep_running=0
stop_only=0
requeue_check=1
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) state="${2:?--state-dir needs a directory}"; shift 2 ;;
    --state-dir=*) state="${1#--state-dir=}"; shift ;;
    --nodes) nodes="${2:?--nodes needs a count}"; shift 2 ;;
    --nodes=*) nodes="${1#--nodes=}"; shift ;;
    --keep-running) keep_running=1; shift ;;
    --stop) stop_only=1; shift ;;
    --skip-requeue) requeue_check=0; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "slurm-local: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$state" in /|"") echo "slurm-local: refusing state dir '$state'" >&2; exit 2 ;; esac
[[ "$nodes" =~ ^[1-9]$ ]] || { echo "slurm-local: --nodes must be 1..9, got '$nodes'" >&2; exit 2; }
ctld_port=${DTRAIN_SLURM_PORT:-16817}   # slurmctld; the slurmd of node i uses ctld_port + i
# (not Slurm's 6817/6818: leave a real Slurm on this machine alone)

t0=$SECONDS
phase() { echo "== slurm-local [$((SECONDS - t0))s] $*"; }
die() { echo "slurm-local: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root (sudo scripts/slurm-local.sh): I install packages and start slurmd"

# ---------------------------------------------------------------- stopping what we start
# Each daemon runs in the foreground as our child, so its PID is exactly the one we started; the
# PIDs are also written to $state/pids so that a later run can stop a cluster left running.
pids=()
stop_pid() {  # stop_pid PID NAME: TERM, then KILL after 10 s
  local pid=$1 name=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "slurm-local: $name (pid $pid) ignored SIGTERM for 10 s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
cancel_jobs() {  # cancels every job of this cluster and waits (KillWait + 10 s) for them to end
  local i
  [ -n "$(squeue -h -o %A 2>/dev/null)" ] || return 0
  scancel $(squeue -h -o %A) 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    [ -z "$(squeue -h -o %A 2>/dev/null)" ] && return 0
    sleep 0.2
  done
  echo "slurm-local: jobs still running after 40 s: $(squeue -h -o '%A %T' | tr '\n' ' ')" >&2
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$keep_running" = 1 ] && [ "$rc" = 0 ]; then
    echo "slurm-local: cluster left running (${pids[*]}). Use it with:"
    echo "  export SLURM_CONF=$state/slurm.conf; sinfo; sbatch ...; srun ..."
    echo "Stop it with: scripts/slurm-local.sh --stop${state:+ --state-dir $state}"
    exit 0
  fi
  [ ${#pids[@]} -gt 0 ] && cancel_jobs
  # Reverse order of start: slurmd, slurmctld, munged.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]%%:*}" "${pids[i]#*:}"; done
  rm -f "$state/pids"
  if [ "$rc" = 0 ]; then
    echo "slurm-local: passed in $((SECONDS - t0)) s (packages ${t_packages} s)"
  else
    echo "slurm-local: failed (exit $rc) after $((SECONDS - t0)) s; logs in $state/log, job output in $state/run" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A cluster left by an earlier run (--keep-running or a killed script) in the same state dir:
# cancel its jobs (slurmstepd outlives slurmd), then stop its daemons by their recorded PIDs,
# each only if it still is that program, slurmd first.
if [ -f "$state/pids" ]; then
  SLURM_CONF=$state/slurm.conf cancel_jobs
  tac "$state/pids" | while read -r pid name; do
    if [ -n "$pid" ] && grep -qa "$name" "/proc/$pid/cmdline" 2>/dev/null; then
      phase "stopping $name (pid $pid) from an earlier run"
      stop_pid "$pid" "$name"
    fi
  done
  rm -f "$state/pids"
fi
if [ "$stop_only" = 1 ]; then
  trap - EXIT
  phase "stopped"
  exit 0
fi

# ---------------------------------------------------------------- packages
# slurm-wlm-basic-plugins (a dependency of slurmd) holds mpi_pmix.so, which dlopens
# /usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so: that symlink is in libpmix-dev.
pkgs=(slurmd slurmctld slurm-client munge libpmix-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  phase "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  phase "packages already installed: ${pkgs[*]}"
fi
t_packages=$((SECONDS - t0))

# ---------------------------------------------------------------- dtrain and data
DTRAIN=${DTRAIN:-build/launch/dtrain}
if [ ! -x "$DTRAIN" ]; then
  phase "no dtrain at $DTRAIN: building it (CPU only)"
  bash scripts/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDTRAIN_CUDA=OFF
  cmake --build build -j"$(nproc)" --target dtrain
  DTRAIN=build/launch/dtrain
fi
DTRAIN=$(realpath "$DTRAIN")
if [ ! -f data/fmnist-train.h5 ] || [ ! -f data/fmnist-test.h5 ]; then
  phase "making data/fmnist-{train,test}.h5"
  DTRAIN="$DTRAIN" bash scripts/get-data.sh > /dev/null
fi

# ---------------------------------------------------------------- daemons
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for ((port = ctld_port; port <= ctld_port + nodes; port++)); do
  port_busy "$port" && die "port $port is in use (another Slurm?); set DTRAIN_SLURM_PORT to the first of $((nodes + 1)) free ports"
done

phase "state directory $state"
# Only ever delete a directory this script made (or an empty one).
if [ -d "$state" ] && [ -n "$(ls -A "$state")" ] && ! grep -qs "written by scripts/slurm-local.sh" "$state/slurm.conf"; then
  die "$state is not empty and not a slurm-local state directory; choose another --state-dir"
fi
rm -rf "$state"
mkdir -p "$state"/{munge,ctld,slurmd,log,run}
chmod 700 "$state/munge"
host=$(hostname -s)
node_names=()
for ((i = 1; i <= nodes; i++)); do node_names+=("$([ "$nodes" = 1 ] && echo "$host" || echo "$host-$i")"); done
# slurmd -C: this machine's CPUs, sockets, cores, threads and memory as a NodeName line.
hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ UpTime=.*//')
cpus=$(echo "$hw" | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
cat > "$state/slurm.conf" <<CONF
# A local Slurm for dtrain's examples, written by scripts/slurm-local.sh.
ClusterName=dtrain-local
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=$((ctld_port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=${state}/munge/munge.socket,cred_expire=10
StateSaveLocation=${state}/ctld
SlurmdSpoolDir=${state}/slurmd/%n
SlurmctldPidFile=${state}/slurmctld.pid
SlurmdPidFile=${state}/slurmd-%n.pid
# Per node, so that N slurmd on one machine do not share PMIx's spmix_appdir_* directories.
TmpFS=${state}/tmp/%n
SlurmctldLogFile=${state}/log/slurmctld.log
SlurmdLogFile=${state}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (containers, VMs without systemd): track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=pmix
SchedulerType=sched/backfill
# A requeued job becomes eligible after cred_expire with no event to wake the scheduler: the
# next periodic pass starts it (defaults: main every 60 s, backfill every 30 s).
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# sbatch --wait polls every 2, 8, then 32 s, but never longer than MinJobAge/2: 10 keeps it at 8 s.
MinJobAge=10
KillWait=30
CONF
for ((i = 1; i <= nodes; i++)); do
  echo "NodeName=${node_names[i - 1]} NodeHostname=${host} NodeAddr=127.0.0.1 Port=$((ctld_port + i)) ${hw} State=UNKNOWN"
done >> "$state/slurm.conf"
echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE OverSubscribe=FORCE:4 State=UP" >> "$state/slurm.conf"
export SLURM_CONF=$state/slurm.conf

start() {  # start NAME COMMAND...: runs it in the foreground of a background job, records its PID
  local name=$1
  shift
  "$@" > "$state/log/$name.out" 2>&1 &
  pids+=("$!:$name")
  echo "$! $1" >> "$state/pids"  # PID and program, for a later run to check before stopping it
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 5; i++)); do
    "$@" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what not ready after ${limit} s (logs: $state/log)"
}

phase "starting munged, slurmctld, ${nodes} slurmd (nodes ${node_names[*]}, each ${hw})"
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$state/munge/munge.key"
start munged munged --foreground --force --key-file="$state/munge/munge.key" \
  --socket="$state/munge/munge.socket" --pid-file="$state/munge/munged.pid" \
  --seed-file="$state/munge/munged.seed" --log-file="$state/log/munged.log"
wait_for 10 munged munge --socket="$state/munge/munge.socket" --no-input
start slurmctld slurmctld -D -f "$state/slurm.conf"
wait_for 30 slurmctld scontrol ping
for name in "${node_names[@]}"; do
  mkdir -p "$state/slurmd/$name" "$state/tmp/$name"
  start "slurmd-$name" slurmd -D -f "$state/slurm.conf" -N "$name"
done
wait_for 30 "${nodes} node(s)" bash -c "[ \$(sinfo -h -N -o %t | grep -cE '^(idle|mix|alloc)') = $nodes ]"
phase "cluster up: $(sinfo -h -o '%P %a %D %t %c CPUs')"

# ---------------------------------------------------------------- 1. the example batch job
overcommit=()
[ "${cpus:-1}" -ge 2 ] || overcommit=(--overcommit)  # 2 tasks on a 1-CPU machine
# 2 tasks: both on one node, or one on each of 2 nodes.
job_nodes=$((nodes > 1 ? 2 : 1))
sbatch_common=(--parsable --nodes=$job_nodes --ntasks-per-node=$((2 / job_nodes)) --cpus-per-task=1 --time=30 --gpus-per-node=0
               "${overcommit[@]}" --export="ALL,DTRAIN=$DTRAIN,DTRAIN_DEVICE=cpu" -D "$repo")
train_args=(configs/fmnist-mlp.ini --train.batch_size=64 --log.progress=lines)

phase "1. sbatch --wait examples/slurm/train.sbatch: 2 tasks on ${job_nodes} node(s), 50 steps"
job_out=$state/run/job-train.out
rc=0
sbatch --wait "${sbatch_common[@]}" --job-name=dtrain-train -o "$job_out" examples/slurm/train.sbatch \
  "${train_args[@]}" --train.max_steps=50 --train.log_every=10 --log.dir="$state/run/train" > /dev/null || rc=$?
cat "$job_out"
[ "$rc" = 0 ] || die "the batch job exited $rc"
grep -q "world: 2 ranks" "$job_out" || die "the job did not form a 2-rank world"
grep -q "^result: steps=50 .*interrupted=no" "$job_out" || die "no 'result: steps=50 ... interrupted=no' line"
ckpt=$(sed -n 's/^result:.* checkpoint=//p' "$job_out")
[ -n "$ckpt" ] && [ -f "$ckpt" ] || die "the final checkpoint '$ckpt' is missing"
phase "1. passed: $(grep '^result:' "$job_out")"

# ---------------------------------------------------------------- 2. time limit -> checkpoint -> requeue
if [ "$requeue_check" = 1 ]; then
  phase "2. USR1 to the batch script (as --signal=B:USR1@300 does) -> checkpoint -> requeue -> resume"
  job_out=$state/run/job-requeue.out
  job=$(sbatch "${sbatch_common[@]}" --job-name=dtrain-requeue -o "$job_out" examples/slurm/train.sbatch \
    "${train_args[@]}" --train.max_steps=100000 --train.log_every=10 --log.dir="$state/run/requeue")
  # Once training has logged a few steps, signal the batch shell only (not the ranks).
  wait_for 120 "training in job $job" grep -q "step 20/" "$job_out"
  scancel --batch --signal=USR1 "$job"
  wait_for 120 "requeue of job $job" grep -q "requeueing" "$job_out"
  # The requeued run resumes; stop it for good with SIGTERM to the ranks (scancel: checkpoint, exit 0).
  wait_for 180 "resumed run of job $job" grep -q "resumed from" "$job_out"
  scancel "$job"
  wait_for 90 "end of job $job" bash -c "scontrol show job $job | grep -qE 'JobState=(CANCELLED|COMPLETED|FAILED)'"
  cat "$job_out"
  grep -q "interrupted=yes" "$job_out" || die "the signalled run did not report interrupted=yes"
  [ "$(grep -c '^result:' "$job_out")" -ge 2 ] || die "expected a result: line from both runs"
  grep -q "run 1," "$job_out" || die "the second run is not marked as a restart"
  phase "2. passed: checkpointed on USR1, requeued, resumed ($(grep -o 'resumed from.*' "$job_out" | head -1))"
fi

# ---------------------------------------------------------------- 3. srun: PMIx and --mpi=none
phase "3. srun --mpi=pmix: one MPI world of 2"
srun_train=("$DTRAIN" train --config configs/fmnist-mlp.ini --train.max_steps=5 --data.test= --log.progress=none)
out=$(srun --mpi=pmix -n 2 "${overcommit[@]}" "${srun_train[@]}" --log.dir="$state/run/srun-pmix" 2>&1) ||
  { echo "$out"; die "srun --mpi=pmix -n 2 failed"; }
echo "$out" | grep -q "world: 2 ranks" || { echo "$out"; die "srun --mpi=pmix did not form a 2-rank world"; }
echo "$out" | grep "^result:"

phase "3. srun --mpi=none: SLURM_* variables only"
out=$(srun --mpi=none -n 2 "${overcommit[@]}" "$DTRAIN" info 2>&1) || { echo "$out"; die "srun --mpi=none dtrain info failed"; }
echo "$out" | grep "^launcher:"
[ "$(echo "$out" | grep -c '^launcher: srun (rank [01] of 2')" = 2 ] || die "dtrain info does not see srun rank r of 2"
out=$(srun --mpi=none -n 1 "${srun_train[@]}" --log.dir="$state/run/srun-none-1" 2>&1) ||
  { echo "$out"; die "srun --mpi=none -n 1 training failed"; }
echo "$out" | grep "^result:"
rc=0
out=$(timeout 120 srun --mpi=none -n 2 "${overcommit[@]}" "${srun_train[@]}" --log.dir="$state/run/srun-none-2" 2>&1) || rc=$?
echo "$out" | grep -i "error" | sort -u
[ "$rc" != 0 ] && [ "$rc" != 124 ] || die "srun --mpi=none -n 2 training: exit $rc (expected a clear error, not success or a hang)"
echo "$out" | grep -q "comm.backend=single in a launch of 2 processes (srun)" ||
  { echo "$out"; die "srun --mpi=none -n 2: not the expected error"; }
phase "3. passed"
