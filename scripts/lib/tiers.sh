# Test tiers for scripts/test.sh: run each, whatever the others did, and summarise them at the end.
# Source it, call `tier` once per tier, then `tier_summary` (its exit status: 1 if any failed).
#
#   tier NAME [--no-tests-ok] -- COMMAND [ARGS...]
#
# The command's exit code decides the tier's line in the summary:
#   0   passed
#   77  skipped: the reason is the first line of the file $TIER_SKIP_REASON (which the command
#       may write), else the last line the command printed
#   5   pytest collected no tests: passed with --no-tests-ok (a tier that can legitimately have
#       none), failed otherwise
#   any other: failed (exit N)
# The command's output goes to the terminal unchanged (pytest's closing line included).

TIER_SUMMARY=()
TIER_FAILED=0

tier() {
    local name="$1" no_tests_ok=0
    shift
    if [[ "${1:-}" == "--no-tests-ok" ]]; then no_tests_ok=1; shift; fi
    if [[ "${1:-}" == "--" ]]; then shift; fi
    local log reason_file rc reason
    log="$(mktemp)"
    reason_file="$(mktemp)"
    echo "== $name: $*"
    TIER_SKIP_REASON="$reason_file" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if [[ $rc -eq 0 ]] || [[ $rc -eq 5 && $no_tests_ok -eq 1 ]]; then
        TIER_SUMMARY+=("$name: passed")
    elif [[ $rc -eq 77 ]]; then
        reason="$(head -n1 "$reason_file")"
        [[ -n "$reason" ]] || reason="$(grep -v '^[[:space:]]*$' "$log" | tail -n1)"
        TIER_SUMMARY+=("$name: skipped (${reason:-no reason given})")
    else
        TIER_SUMMARY+=("$name: failed (exit $rc)")
        TIER_FAILED=1
    fi
    rm -f "$log" "$reason_file"
}

tier_summary() {
    echo
    echo "== summary"
    printf '%s\n' "${TIER_SUMMARY[@]}"
    return "$TIER_FAILED"
}
