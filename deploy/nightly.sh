#!/bin/sh
# The nightly job, with a memory of its exit codes (used by deploy/crontab, deploy/systemd and
# .github/workflows/nightly.yml). Exit 3 (finished, but papers are still pending or were given up,
# or the model was judged unfit) is normal once: the next run retries. Night after night it means
# something needs a person (a model that cannot do the job, an exhausted budget), so from the
# ARXIV_DIGEST_WARN_AFTER-th exit 3 in a row (default 2) this script prints a warning on stderr and
# exits 3; a single exit 3 exits 0. Other failures pass through with a one-line note on stderr.
# Cron mails stderr, systemd marks the unit failed, GitHub Actions fails the job: a person sees it.
#
#   deploy/nightly.sh run --commit                 (arguments go to arxiv-digest)
#
# ARXIV_DIGEST      the program (default .venv/bin/arxiv-digest)
# ARXIV_DIGEST_LOG  if set, arxiv-digest's own output is appended there instead of shown
# ARXIV_DIGEST_STATE  folder for the streak counter (default state, beside the store)
set -u
digest=${ARXIV_DIGEST:-.venv/bin/arxiv-digest}
state=${ARXIV_DIGEST_STATE:-state}
warn_after=${ARXIV_DIGEST_WARN_AFTER:-2}
log=${ARXIV_DIGEST_LOG:-}
streak_file="$state/exit3-streak"

if [ -n "$log" ]; then
    mkdir -p "$(dirname "$log")"
    "$digest" "$@" >>"$log" 2>&1
else
    "$digest" "$@"
fi
code=$?
where=${log:-the output above}

case "$code" in
0)
    rm -f "$streak_file"
    exit 0
    ;;
3)
    streak=$(cat "$streak_file" 2>/dev/null || echo 0)
    case "$streak" in '' | *[!0-9]*) streak=0 ;; esac
    streak=$((streak + 1))
    mkdir -p "$state" && echo "$streak" >"$streak_file"
    if [ "$streak" -ge "$warn_after" ]; then
        echo "arxiv-digest: WARNING: $streak runs in a row ended with exit 3 (papers pending or given up, or the model judged unfit); see the closing line in $where, $state/reports/ and 'arxiv-digest doctor'" >&2
        exit 3
    fi
    exit 0
    ;;
*)
    echo "arxiv-digest: exit $code; see $where and $state/reports/" >&2
    exit "$code"
    ;;
esac
