#!/usr/bin/env bash
# Issue 20's accelerator figures in one run, for a lent GPU (the `device` tool) or a TPU VM. From the repo root:
#
#   bash results/device/run.sh [OUT [NAME...]]   # OUT defaults to results/device/<date>; NAMEs pick benchmarks
#
# The whole set has not been timed on an accelerator; where one call may run 10 minutes, run it in parts by name
# (paper_size, paper_size_cudnn, train_steps_bfloat16, batch_throughput_bfloat16, train_steps_float32,
# batch_throughput_float32, sampler_overhead), into the same OUT.
#
# Each benchmark's log and its JSON line go to OUT; a benchmark that fails is reported and the next one runs.
#  1. paper_size --run: the paper-size generators (310M, 83M) in bf16: train-step MFU and sampler images/s, with
#     the heads-first attention and with cuDNN's flash attention (generator.attention, docs/design.md §8);
#  2. train_steps: the default-size generator and selector train steps, bf16 and fp32: MFU;
#  3. batch_throughput: the default-size sampler's per-image time at batch 1, 8, 32, bf16 and fp32;
#  4. sampler_overhead: the sampler against its forwards-only bound (fp32, the benchmark's defaults).
# train_steps reads a batch of captioned shapes and builds the dataset (~50 MB, ~1 min) under $TFDS_DATA_DIR (default
# .tfds/ here) when it is missing: copy ~/tensorflow_datasets/captioned_shapes into .tfds/ and carry it to skip that.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-results/device/$(date +%F)}
shift || true
only=" $* "
mkdir -p "$out"
export TFDS_DATA_DIR=${TFDS_DATA_DIR:-$PWD/.tfds}

bench() {
  local name=$1
  shift
  if [[ "$only" != "  " && "$only" != *" $name "* ]]; then return 0; fi
  echo "== $name: python $* ($(date +%T))"
  if python "$@" >"$out/$name.log" 2>&1; then
    tail -1 "$out/$name.log" >"$out/$name.json"
    grep -v '^{' "$out/$name.log" | grep -v -i warning | tail -4
  else
    echo "   FAILED (exit $?): $out/$name.log"
    tail -3 "$out/$name.log"
  fi
}

bench paper_size benchmarks/paper_size.py --run --compute_dtype=bfloat16 --run_batch=16 --steps=16
bench paper_size_cudnn benchmarks/paper_size.py --run --compute_dtype=bfloat16 --run_batch=16 --steps=16 \
  --attention=cudnn
for dtype in bfloat16 float32; do
  bench "train_steps_$dtype" benchmarks/train_steps.py --stages=generator,selector --compute_dtype=$dtype
  bench "batch_throughput_$dtype" benchmarks/batch_throughput.py --grids=16,32 --batches=1,8,32 --steps=8 \
    --forward_rows=0 --compute_dtype=$dtype
done
bench sampler_overhead benchmarks/sampler_overhead.py --strategies=uniform,tcts_fas
echo "done ($(date +%T)): $out"
