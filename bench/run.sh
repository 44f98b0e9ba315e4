#!/usr/bin/env bash
# Runs every bench in sequence with the project's venv (each prints its own table);
# bench/site.py is included when present. Exits non-zero if any bench failed, after running all.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
failed=()
for bench in fetch llm backfill fulltext site; do
    script="bench/$bench.py"
    [[ -f $script ]] || continue
    echo "=== $script"
    started=$SECONDS
    if "$python" "$script"; then
        echo "=== $script done in $((SECONDS - started)) s"
    else
        echo "=== $script FAILED (exit $?)"
        failed+=("$bench")
    fi
    echo
done
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
