#!/bin/sh
# Run a job and record the run on xpander as an external task.
#
#   report_run.sh NAME COMMAND [ARG...]
#
# NAME becomes the report's input, the last line COMMAND prints its result; a non-zero exit
# status makes it a failed run. The script exits with COMMAND's own status: reporting never
# fails the job (cron mails you about the job, not about the platform).
#
# Needs XPANDER_API_KEY and XPANDER_AGENT_ID (and XPANDER_BASE_URL off the xpander cloud).
# `xpander-sync report` exits with 0 when the report was delivered, 3 when the platform could
# not be reached and the report was queued in the outbox ($XPANDER_OUTBOX, default
# ~/.local/state/xpander-sync/outbox.sqlite3), 1 when the platform refused it, 2 on a usage
# or configuration error.
set -u
name=$1
shift

# Reports queued by earlier runs go first, oldest first, with their original task ids.
xpander-sync outbox flush >/dev/null || true

started=$(date +%s)
output=$("$@")
status=$?
duration=$(($(date +%s) - started))
[ -n "$output" ] && printf '%s\n' "$output"

failed=""
[ "$status" -eq 0 ] || failed="--failed"
xpander-sync report --input "$name" --result "$(printf '%s\n' "$output" | tail -n 1)" \
    --duration "$duration" $failed >/dev/null
case $? in
    0) ;;
    3) echo "report_run.sh: report queued in the outbox; the next run delivers it" >&2 ;;
    *) echo "report_run.sh: report not sent (see above)" >&2 ;;
esac
exit "$status"
