#!/usr/bin/env bash
# Applies one hand-made mutant of the money code to the working tree (never commit the result).
#
#   test/mutants/apply.sh <name>...   apply these mutants (e.g. `strict h`)
#   test/mutants/apply.sh --revert    put src/ back as committed (git checkout -- src)
#   test/mutants/apply.sh --list      the mutants and what each means
#
# Each substitution must match exactly once, or the script fails and changes nothing more: after
# the ledger refactor (SQL moved to src/ledger/) the patterns below stop matching and must be
# re-pointed at the new statements, by the meaning given in --list / test/mutants/README.md.
# test/mutants/verify.sh runs the suite against every mutant.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

CP=src/credits-process/credits-process.service.ts
REC=src/wallets/reconciliation.service.ts

# sub FILE PERL_REGEX PERL_QQ_STRING: replaces the one match of the regex (whole file, /s) by the
# string, read as a Perl double-quoted string ($1 is the first group, \n a newline, \$ a dollar).
# Fails, writing nothing, unless the regex matches exactly once.
sub() {
  local file=$1 from=$2 to=$3
  FROM="$from" TO="$to" perl -0777 -i -pe '
    my $n = () = /$ENV{FROM}/gs;
    die "pattern matched $n times in $ARGV (want 1): $ENV{FROM}\n" unless $n == 1;
    my $to = $ENV{TO};
    s/$ENV{FROM}/"qq\x00$to\x00"/see;
  ' "$file"
}

list() {
  cat <<'EOF'
a       batched hold fit `>=` → `>` (tryHolds): a start that fits exactly is refused by the batch
a-all   the same in the single-hold statement too (tryHold): no statement places an exact fit
b       ON CONFLICT (idempotency key) DO NOTHING removed from the batched direct charge (applyMany)
c       reconciliation no longer compares held with Σ live holds
d       `available > 0` → `>= 0` in both hold statements (tryHold, tryHolds): a wallet at 0 gets a hold
e       usage-key lower-casing removed (normalize() of settle, cancel's toLowerCase)
f       cancel claims an expired hold too (`status = 'held'` → `status IN ('held','expired')`): second release
g       batched settlement releases a swept (expired) hold again (held_delta always -amount)
h       twins in one batch not sent to the single path (settleMany's `seen` check removed)
strict  not a mutant: a failed batch statement throws instead of falling back to the single path
        (what the ledger refactor's strict test mode does; combine: `apply.sh strict h`)
EOF
}

apply() {
  case "$1" in
    a) sub $CP 'balance - held_before >= amount' 'balance - held_before > amount' ;;
    a-all)
      apply a
      sub $CP 'AND w\.balance - w\.held >= f\.min_holding_credits' 'AND w.balance - w.held > f.min_holding_credits'
      ;;
    b) sub $CP '(FROM r WHERE direct AND EXISTS \(SELECT 1 FROM wallets w WHERE w\.user_id = r\.user_id\)\n)\s*ON CONFLICT \(user_id, idempotency_key\) WHERE idempotency_key IS NOT NULL DO NOTHING\n' '$1' ;;
    c) sub $REC 'WHERE balance <> ledger_sum OR held <> live_holds OR' 'WHERE balance <> ledger_sum OR' ;;
    d)
      sub $CP 'balance - held_before > 0 AND' 'balance - held_before >= 0 AND'
      sub $CP 'AND w\.balance - w\.held > 0\n' "AND w.balance - w.held >= 0\n"
      ;;
    e)
      sub $CP 'return dto\.usage_key === undefined \|\| dto\.usage_key === dto\.usage_key\.toLowerCase\(\)' 'return true'
      sub $CP 'const usageKey = rawUsageKey\.toLowerCase\(\);' 'const usageKey = rawUsageKey;'
      ;;
    f) sub $CP "WHERE usage_key = \\\$1 AND status = 'held'\n" "WHERE usage_key = \\\$1 AND status IN ('held', 'expired')\n" ;;
    g) sub $CP "RETURNING h\.usage_key, CASE WHEN old\.status = 'held' THEN -h\.amount ELSE 0 END AS held_delta, h\.late" 'RETURNING h.usage_key, -h.amount AS held_delta, h.late' ;;
    h) sub $CP '\(twin !== undefined && seen\.has\(twin\)\)' 'false' ;;
    strict)
      sub $CP '(if \(isDatabaseUnavailable\(error\)\) return items\.map\(\(\) => Promise\.reject\(error\)\);\n)' '$1        throw error;\n'
      sub $CP '(if \(isDatabaseUnavailable\(error\)\) unavailable = error;\n\s*)else\n' '${1}else throw error;\n'
      ;;
    *)
      echo "unknown mutant: $1 (see --list)" >&2
      exit 2
      ;;
  esac
}

case "${1:-}" in
  '' | --help | -h | --list) list ;;
  --revert) git checkout -- src && echo "src/ reverted" ;;
  *)
    for m in "$@"; do apply "$m"; done
    echo "applied: $* (git diff --stat src:)"
    git diff --stat -- src
    ;;
esac
