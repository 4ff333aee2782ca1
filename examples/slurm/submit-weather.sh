#!/usr/bin/env bash
# Submits the weather pipeline (examples/weather.rs) as three Slurm jobs, one per cluster, all
# at once: A1 runs stage 1 (2 ranks), A2 stage 2 (3 ranks), A3 stage 3 (2 ranks); each job
# starts its cluster's manager and provider daemons (juxmem-cluster.sbatch) and waits for the
# others' before its stage. Every stage checks its fields against a single-process run. A
# fourth job (cluster V, one rank, no daemons) runs once the three stages are over and reads
# every final field back (stage verify) from A3's daemons, which keep them until it is done.
#
#   examples/slurm/submit-weather.sh RUN_DIR [SBATCH OPTIONS...]
#
# RUN_DIR (new, on a shared file system) gets the federation directory, the jobs' output and
# the heat maps. Options after it go to every sbatch (e.g. --partition=P, --account=A).
# Environment: WEATHER (the weather example binary, default target/release/examples/weather),
# JUXMEM_INTERFACE (e.g. ib0), JUXMEM_BIN, CYCLES (default 4, at most 4: day 3 keeps 4 versions,
# read only once stage 3 is over).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run="${1:?usage: submit-weather.sh RUN_DIR [SBATCH OPTIONS...]}"
shift
if [[ -e "$run/federation" ]]; then
  echo "submit-weather: $run/federation exists (an earlier run): give a new RUN_DIR" >&2
  exit 2
fi
mkdir -p "$run/federation" "$run/out"
run="$(cd "$run" && pwd)"
weather="${WEATHER:-target/release/examples/weather}"
weather="$(cd "$(dirname "$weather")" && pwd)/$(basename "$weather")"
cycles="${CYCLES:-4}"
export JUXMEM_FEDERATION_DIR="$run/federation"
echo weather >"$JUXMEM_FEDERATION_DIR/federation"

# TLS credentials: a CA for this run (its key stays in RUN_DIR/ca, never on the compute nodes'
# command lines) and each cluster's credentials where its processes look for them without
# being told: the federation directory's credentials/<cluster> (docs/SECURITY.md).
if [[ "${JUXMEM_INSECURE:-0}" != 1 ]]; then
  "${JUXMEM_BIN:-juxmem}" federation init "$run/ca" --name weather --days 30 >/dev/null
  for cluster in A1 A2 A3 V; do
    "${JUXMEM_BIN:-juxmem}" credentials issue --ca "$run/ca" --cluster "$cluster" --days 30 \
      --out "$JUXMEM_FEDERATION_DIR/credentials/$cluster" >/dev/null
  done
fi

# cluster  nodes  ranks  providers/node  stage  after
jobs=(
  "A1 1 2 1 1 -"
  "A2 1 3 1 2 -"
  "A3 1 2 2 3 -" # day 3 keeps two copies in A3: two daemons
  "V 1 1 0 verify A1,A2,A3"
)
for job in "${jobs[@]}"; do
  read -r cluster nodes ranks ppn stage after <<<"$job"
  after_opt=()
  if [[ "$after" != - ]]; then after_opt=(--after "$after"); fi
  sbatch --job-name="juxmem-$cluster" --nodes="$nodes" --ntasks="$ranks" \
    --output="$run/$cluster-%j.out" "$@" \
    "$here/juxmem-cluster.sbatch" --cluster "$cluster" --clusters A1,A2,A3,V \
    --providers-per-node "$ppn" --capacity 1GiB "${after_opt[@]}" \
    -- "$weather" --stage "$stage" --cycles "$cycles" --out "$run/out"
done
echo "submit-weather: federation in $JUXMEM_FEDERATION_DIR, output in $run"
