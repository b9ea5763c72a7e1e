#!/usr/bin/env bash
# N local processes on one machine, each with D simulated CPU devices: a multi-host run in miniature
# (jax.distributed over localhost, gloo collectives). Used by the tests; also handy for debugging
# multi-host code paths without a pod.
#   launch/multiprocess_cpu.sh N D CONFIG WORKDIR [flags...]
# Output of process i goes to WORKDIR/process_i.log; exits non-zero if any process fails.
set -uo pipefail
n=${1:?usage: launch/multiprocess_cpu.sh NUM_PROCESSES DEVICES_PER_PROCESS CONFIG WORKDIR [flags...]}
d=${2:?devices per process}; config=${3:?config}; workdir=${4:?workdir}; shift 4
port=${JAXGEN_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$workdir"
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu JAXGEN_COORDINATOR="127.0.0.1:$port" JAXGEN_NUM_PROCESSES=$n JAXGEN_PROCESS_ID=$i \
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$d" \
    python -m jaxgen.main --config="$config" --workdir="$workdir" "$@" >"$workdir/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status -eq 0 ] || echo "a process failed; see $workdir/process_*.log" >&2
exit $status
