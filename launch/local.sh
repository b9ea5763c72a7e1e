#!/usr/bin/env bash
# Single host, all local accelerators (or the CPU): one process.
#   launch/local.sh configs/vae/mnist.py /tmp/vae [--mode=train] [--config.train.num_steps=1000 ...]
set -euo pipefail
config=${1:?usage: launch/local.sh CONFIG WORKDIR [flags...]}; workdir=${2:?workdir}; shift 2
exec python -m jaxgen.main --config="$config" --workdir="$workdir" "$@"
