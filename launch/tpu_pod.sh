#!/usr/bin/env bash
# TPU VM pod slice: the same command on every worker; jax.distributed.initialize() finds the pod by itself.
#   TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh configs/diffusion/ddpm_cifar10.py gs://bucket/ddpm [flags...]
# First time on a fresh pod, install jaxgen on all workers (SETUP=1): clones REPO and pip-installs it
# with TPU JAX. The workdir should be a GCS path (or a shared disk) so all workers see the checkpoints.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
config=${1:?usage: launch/tpu_pod.sh CONFIG WORKDIR [flags...]}; workdir=${2:?workdir}; shift 2
repo=${REPO:-https://github.com/jaxgen/jaxgen.git}
if [ "${SETUP:-0}" = 1 ]; then
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
    set -e; [ -d jaxgen ] || git clone $repo jaxgen; cd jaxgen && git pull --ff-only &&
    pip install -U 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html &&
    pip install -e ."
fi
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  cd jaxgen && python -m jaxgen.main --config=$config --workdir=$workdir $*"
