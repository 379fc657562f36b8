#!/usr/bin/env bash
# Reproduce the transfer reports in benchmarks/results/ (issue: proof of transfer).
#   bash benchmarks/run_validation.sh [mlp|mlp-sgd|mlp-sgdm|gpt|gpt-mup|denseam|denseam-{lse,relu}-{features,memories}[-k32|-k32-b8|-k32-b12|-k32-retrieval|-p4096|-p4096-eps|-p4096-retrieval|-p16|-p16-retrieval]|denseam-finite-width-{n4096,b20}|denseam-retrieval-k4096|depth|horizon|batch|batch-small|batch-d19-b128|batch-wide-{d21-b256,d20-b512,d21-b1024,d21-b2048}|batch-sat-{d21-b512,d21-b64,d22-b512,d22-b128}|batch-long|batch-fresh-{d22-b256,d20-b64,d20-b1024,d20-b256}|batch-s50-dN-bB|mlp-batch-{t,r}{1..5}[-sN]|hf-gpt2 ...]
#   (default: mlp gpt denseam)
# depth, horizon, batch, hf-gpt2, mlp-sgd, mlp-sgdm and the denseam-* jobs are CPU-sized (DEVICE=cpu; up to an hour each on 2 loaded cores).
# DEVICE=cuda by default: the targets (width 1024-2048, 3 seeds, a dense lr grid) take hours on a
# 2-core CPU and minutes on one GPU; DEVICE=cpu works, slowly. SCALEPLAN overrides the command
# (e.g. "python3 -m scaleplan.cli"), RESULTS the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
RESULTS=${RESULTS:-benchmarks/results}
SCALEPLAN=${SCALEPLAN:-scaleplan}
WORKERS=${WORKERS:-1}  # worker processes for the small-width sweeps
for job in "${@:-mlp gpt denseam}"; do
    for j in $job; do
        case $j in
            mlp) $SCALEPLAN validate sweeps/transfer/mlp-sp.toml sweeps/transfer/mlp-mup.toml \
                    --target-width 2048 --seeds 3 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name mlp ;;
            mlp-sgd)  # the same MLP trained with plain SGD (muP's SGD lrs), 5 seeds; measured with DEVICE=cpu (53 min on 2 loaded cores)
                $SCALEPLAN validate sweeps/transfer/mlp-sgd-sp.toml sweeps/transfer/mlp-sgd-mup.toml \
                    --target-width 2048 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name mlp-sgd \
                    --grid-step 0.5 --bootstrap 200 ;;
            mlp-sgdm)  # the same with SGD momentum 0.9 ([train] momentum), measured with DEVICE=cpu WORKERS=2
                $SCALEPLAN validate sweeps/transfer/mlp-sgdm-sp.toml sweeps/transfer/mlp-sgdm-mup.toml \
                    --target-width 2048 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name mlp-sgdm \
                    --grid-step 0.5 --bootstrap 200 ;;
            gpt) $SCALEPLAN validate sweeps/transfer/gpt-sp.toml sweeps/transfer/gpt-mup.toml \
                    --target-width 1024 --seeds 3 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name gpt ;;
            gpt-mup) $SCALEPLAN validate sweeps/transfer/gpt-mup.toml \
                    --target-width 1024 --seeds 3 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name gpt-mup ;;
            denseam) $SCALEPLAN validate sweeps/transfer/denseam-sp.toml sweeps/transfer/denseam-denseam.toml \
                    --target-width 1024 --seeds 3 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name denseam ;;
            denseam-lse-features|denseam-lse-memories|denseam-relu-memories|denseam-lse-features-k32|denseam-lse-memories-p4096|denseam-relu-memories-p4096|denseam-lse-memories-p16|denseam-relu-memories-p16)
                # DenseAM retrieval, 8x in N or K (-k32, -p4096, -p16: the task's capacity regime held fixed along the ladder)
                $SCALEPLAN validate sweeps/transfer/$j-sp.toml sweeps/transfer/$j-denseam.toml \
                    --target-width 2048 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name $j ;;
            denseam-relu-features|denseam-relu-features-k32|denseam-lse-features-k32-b8|denseam-lse-features-k32-b12|denseam-lse-memories-p4096-eps|denseam-lse-memories-p4096-retrieval|denseam-lse-memories-p16-retrieval)
                # the rules alone: SP relu-poly is refused at N = 2048 (its descent explodes at init); b8, b12, eps and retrieval are checks of one idea each
                $SCALEPLAN validate sweeps/transfer/$j-denseam.toml \
                    --target-width 2048 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name $j ;;
            denseam-finite-width-n4096)
                # the finite-width lr law (fit --lr-form finite-width) trained at its prediction: lse beta0 = 16, 16x in N
                $SCALEPLAN validate sweeps/transfer/denseam-lse-features-k32-denseam.toml --lr-form finite-width \
                    --target-width 4096 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS/denseam-finite-width" \
                    --name lse-features-k32-n4096 ;;
            denseam-finite-width-b20)
                # the same at beta0 = 20, 8x in N (a fresh sweep)
                $SCALEPLAN validate sweeps/transfer/denseam-lse-features-k32-b20-denseam.toml --lr-form finite-width \
                    --target-width 2048 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS/denseam-finite-width" \
                    --name lse-features-k32-b20 ;;
            denseam-lse-features-k32-retrieval)
                # the retrieval memory eps over N, with the finite-width law
                $SCALEPLAN validate sweeps/transfer/$j-denseam.toml --lr-form finite-width \
                    --target-width 2048 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name $j ;;
            denseam-retrieval-k4096)  # the retrieval memory eps at K = 4096 (16x), pre-registered and blind
                $SCALEPLAN validate sweeps/transfer/denseam-lse-memories-p4096-retrieval-denseam.toml --target-width 4096 \
                    --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS/denseam-retrieval-k4096" \
                    --name lse-memories-p4096-retrieval-k4096 ;;
            depth) $SCALEPLAN validate sweeps/transfer/gpt-depth-completep.toml sweeps/transfer/gpt-depth-mup.toml \
                    --target depth=16 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name gpt-depth ;;
            horizon) $SCALEPLAN validate sweeps/transfer/gpt-horizon.toml \
                    --target steps=1600 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name gpt-horizon ;;
            batch) $SCALEPLAN validate sweeps/transfer/gpt-batch.toml \
                    --target batch=128 --seeds 10 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name gpt-batch
                   $SCALEPLAN fit sweeps/transfer/gpt-batch.toml -o "$RESULTS/gpt-batch-fit.json" > "$RESULTS/gpt-batch-fit.txt" ;;
            batch-small)  # batches 1-4 (batch 4 again: it must equal gpt-batch's), fitted with gpt-batch's trials (batch 1-32)
                $SCALEPLAN sweep sweeps/transfer/gpt-batch-small.toml
                $SCALEPLAN sweep export sweeps/transfer/gpt-batch-small.toml -o "$RESULTS/gpt-batch-small-trials.csv"
                python3 -c "import pandas as pd, sys; s = pd.read_csv(sys.argv[1]); b = pd.read_csv(sys.argv[2]); \
pd.concat([s[s.batch_size < 4], b]).to_csv(sys.argv[3], index=False)" "$RESULTS/gpt-batch-small-trials.csv" \
                    "$RESULTS/transfer-gpt-batch-trials.csv" "$RESULTS/transfer-gpt-batch-combined-trials.csv"
                rm "$RESULTS/gpt-batch-small-trials.csv"
                $SCALEPLAN fit "$RESULTS/transfer-gpt-batch-combined-trials.csv" -o "$RESULTS/transfer-gpt-batch-combined.json" \
                    --x width --lr-batch --d-unit tokens > "$RESULTS/gpt-batch-combined-fit.txt" ;;
            batch-d19-b128)  # the fresh target of batch-prereg.md's last addendum (the sweep's journal reused when it exists)
                $SCALEPLAN validate sweeps/transfer/gpt-batch.toml --target batch=128 --target tokens=524288 --seeds 10 \
                    --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS/gpt-batch-surge" --name gpt-batch-d19-b128 ;;
            batch-wide-d21-b256|batch-wide-d20-b512|batch-wide-d21-b1024|batch-wide-d21-b2048)  # batch-prereg.md's surge addenda:
                # the surge law of batches 1-32, trained at its own prediction
                case $j in
                    *d21-b256) target="--target batch=256 --target tokens=2097152" ;;
                    *d20-b512) target="--target batch=512 --target tokens=1048576" ;;
                    *d21-b1024) target="--target batch=1024 --target tokens=2097152" ;;
                    *) target="--target batch=2048 --target tokens=2097152" ;;
                esac
                $SCALEPLAN validate sweeps/transfer/gpt-batch-wide.toml --lr-form surge $target --seeds 10 --device "$DEVICE" \
                    --workers "$WORKERS" --out "$RESULTS/gpt-batch-surge/${j#batch-wide-}" --name "gpt-batch-wide-${j#batch-wide-}" ;;
            batch-sat-d21-b512|batch-sat-d21-b64|batch-sat-d22-b512|batch-sat-d22-b128)  # batch-prereg.md's saturating addendum:
                # the saturating law of batches 1-32, trained at its own prediction
                j_tokens=${j#batch-sat-d}; j_tokens=$((1 << ${j_tokens%%-*})); j_batch=${j##*-b}
                $SCALEPLAN validate sweeps/transfer/gpt-batch-wide.toml --lr-form saturating --target batch="$j_batch" \
                    --target tokens="$j_tokens" --seeds 10 --device "$DEVICE" --workers "$WORKERS" \
                    --out "$RESULTS/gpt-batch-saturating/${j#batch-sat-}" --name "gpt-batch-sat-${j#batch-sat-}" ;;
            batch-long)  # batch-prereg.md's extension addendum: batches 4-32 at D = 2^18, 2^19, fitted with gpt-batch-wide's 18 cells
                $SCALEPLAN sweep sweeps/transfer/gpt-batch-long.toml --device "$DEVICE" --workers "$WORKERS"
                $SCALEPLAN sweep export sweeps/transfer/gpt-batch-long.toml -o "$RESULTS/transfer-gpt-batch-long-trials.csv"
                python3 -c "import pandas as pd, sys; pd.concat([pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])]).to_csv(sys.argv[3], index=False)" \
                    "$RESULTS/gpt-batch-saturating/d21-b512/transfer-gpt-batch-wide-trials.csv" \
                    "$RESULTS/transfer-gpt-batch-long-trials.csv" "$RESULTS/transfer-gpt-batch-extended-trials.csv"
                $SCALEPLAN fit "$RESULTS/transfer-gpt-batch-extended-trials.csv" -o "$RESULTS/transfer-gpt-batch-extended.json" \
                    --x width --lr-batch --d-unit tokens --lr-form saturating > "$RESULTS/gpt-batch-extended-fit.txt" ;;
            batch-fresh-d22-b256|batch-fresh-d20-b64|batch-fresh-d20-b1024|batch-fresh-d20-b256)  # the extension addendum's fresh targets (and its second round), trained at the saturating
                # law of batches 1-32 (as batch-sat-*); the extended law is scored on their grids by batch_law_forms.py
                j_tokens=${j#batch-fresh-d}; j_tokens=$((1 << ${j_tokens%%-*})); j_batch=${j##*-b}
                $SCALEPLAN validate sweeps/transfer/gpt-batch-wide.toml --lr-form saturating --target batch="$j_batch" \
                    --target tokens="$j_tokens" --seeds 10 --device "$DEVICE" --workers "$WORKERS" \
                    --out "$RESULTS/gpt-batch-saturating/${j#batch-fresh-}" --name "gpt-batch-sat-${j#batch-fresh-}" ;;
            batch-s50-d1[7-9]-b[0-9]*|batch-s50-d2[0-2]-b[0-9]*)  # gpt-batch-seeds50/prereg.md: the char-LM targets again
                # with SEEDS (default 50) seeds, trained at the saturating law of batches 1-32 (a GPU run: DEVICE=cuda)
                j_tokens=${j#batch-s50-d}; j_tokens=$((1 << ${j_tokens%%-*})); j_batch=${j##*-b}
                target="--target batch=$j_batch"  # D = 2^17 is the largest swept: there the target is the batch alone
                [ "$j_tokens" -gt 131072 ] && target="$target --target tokens=$j_tokens"
                $SCALEPLAN validate sweeps/transfer/gpt-batch-wide.toml --lr-form saturating $target --seeds "${SEEDS:-50}" --device "$DEVICE" --workers "$WORKERS" \
                    --out "$RESULTS/gpt-batch-seeds50/${j#batch-s50-}" --name "gpt-batch-s50-${j#batch-s50-}" ;;
            mlp-batch-[tr][1-5]|mlp-batch-[tr][1-5]-s[0-9]*)
                # mlp-batch/prereg.md: the MLP's batch targets, first (t) and second (r) round; -sN: N seeds, in seedsN/
                # (-s50: its third addendum; -s20: after validate's grid grew past flat ends)
                seeds=10; out="$RESULTS/mlp-batch"
                case $j in *-s[0-9]*) seeds=${j##*-s}; out="$RESULTS/mlp-batch/seeds$seeds" ;; esac
                case ${j%-s*} in
                    *t1) target="--target batch=128" ;;  # D stays at the largest swept, 2^15
                    *t2) target="--target batch=128 --target tokens=65536" ;;
                    *t3) target="--target batch=256 --target tokens=65536" ;;
                    *t4) target="--target batch=512 --target tokens=131072" ;;
                    *t5) target="--target batch=128 --target tokens=131072" ;;
                    *r1) target="--target batch=256" ;;
                    *r2) target="--target batch=128 --target tokens=262144" ;;
                    *r3) target="--target batch=1024 --target tokens=262144" ;;
                    *r4) target="--target batch=256 --target tokens=131072" ;;
                    *) target="--target batch=512 --target tokens=65536" ;;
                esac
                $SCALEPLAN validate sweeps/transfer/mlp-batch.toml $target --seeds "$seeds" --device "$DEVICE" \
                    --workers "$WORKERS" --out "$out" --name "${j%-s*}" ;;
            hf-gpt2) $SCALEPLAN validate sweeps/transfer/hf-gpt2-sp.toml sweeps/transfer/hf-gpt2-mup.toml \
                    --target-width 256 --seeds 5 --device "$DEVICE" --workers "$WORKERS" --out "$RESULTS" --name hf-gpt2 ;;
            *) echo "unknown job '$j' (use mlp, mlp-sgd, mlp-sgdm, gpt, gpt-mup, denseam, denseam-{lse,relu}-{features,memories}[-k32|-k32-b8|-k32-b12|-k32-retrieval|-p4096|-p4096-eps|-p4096-retrieval|-p16|-p16-retrieval], denseam-finite-width-{n4096,b20}, denseam-retrieval-k4096, depth, horizon, batch, batch-small, batch-d19-b128, batch-wide-{d21-b256,d20-b512,d21-b1024,d21-b2048}, batch-sat-{d21-b512,d21-b64,d22-b512,d22-b128}, batch-long, batch-fresh-{d22-b256,d20-b64,d20-b1024,d20-b256}, batch-s50-dN-bB, mlp-batch-{t,r}{1..5}[-sN], hf-gpt2)" >&2; exit 2 ;;
        esac
    done
done
