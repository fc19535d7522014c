#!/usr/bin/env bash
# Runs test/money-mutants.e2e-spec.ts once per mutant (or combination) and prints which tests
# failed and on which assertion. Needs a clean src/ (it reverts src/ after every run).
#
#   test/mutants/verify.sh                 the default list below
#   test/mutants/verify.sh "strict h" c    only these (each argument is one run; words combine)
#
# A mutant is killed when at least one test fails; the expected killer is the test whose name
# starts with "kills (<letter>)". "strict" alone is the control run: it must pass.
set -uo pipefail
cd "$(git rev-parse --show-toplevel)"
if ! git diff --quiet -- src; then
  echo "src/ has uncommitted changes; refusing to run (test/mutants/apply.sh --revert)" >&2
  exit 2
fi
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=("" strict a a-all b "strict b" c d e "strict e" f g h "strict h")
out=$(mktemp -d)
trap 'git checkout -q -- src' EXIT
for r in "${runs[@]}"; do
  name=${r:-none}
  name=${name// /+}
  git checkout -q -- src
  # shellcheck disable=SC2086
  if [ -n "$r" ] && ! test/mutants/apply.sh $r >/dev/null; then
    echo "$name: could not apply" && continue
  fi
  # No build: the e2e suite runs the app from src/ through ts-jest.
  node --experimental-vm-modules node_modules/jest/bin/jest.js --selectProjects e2e --runInBand \
    --json --outputFile="$out/$name.json" test/money-mutants.e2e-spec.ts >"$out/$name.log" 2>&1
  node -e '
    const r = require(process.argv[1]);
    const failed = r.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === "failed"));
    const line = (a) => {
      const m = (a.failureMessages[0] || "").split("\n").map((l) => l.trim()).filter(Boolean);
      const at = m.find((l) => /money-mutants\.e2e-spec\.ts:\d+/.test(l)) || "";
      const diff = m.filter((l) => /^[-+] /.test(l)).slice(0, 4).map((l) => l.slice(0, 110));
      return `${a.title.slice(0, 50)} @ ${(at.match(/spec\.ts:\d+/) || [""])[0]}\n        ${(diff.length ? diff : [m[0]]).join("\n        ")}`;
    };
    console.log(`${process.argv[2]}: ${failed.length ? "KILLED by " + failed.length : "SURVIVED (all " + r.numPassedTests + " passed)"}`);
    for (const a of failed) console.log("    " + line(a));
  ' "$out/$name.json" "$name"
done
echo "logs: $out"
