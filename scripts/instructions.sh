#!/usr/bin/env bash
# Instructions per request of pkg/app's benchmarks, counted by valgrind's
# callgrind: unlike time, the count is the same on a quiet and a busy
# machine, so two revisions compare within a fraction of a percent where
# CPU-time figures scatter by tens of percent under load.
#
#   scripts/instructions.sh REV [REV...] -- BENCH [BENCH...]
#   scripts/instructions.sh af44680 HEAD -- 'List/users=100$' 'Create$'
#
# REV is any git revision (the work tree's uncommitted state: WORKTREE).
# Each benchmark runs at two iteration counts, N1 and N2 (environment;
# default 100 and 400), and the difference in instructions divided by
# N2 - N1 is the per-request figure: what the setup costs (database,
# migrations, warm-up) cancels out. Only the Go process is counted;
# PostgreSQL's share is unchanged by anything that does not change the
# SQL (tools/load/cpu-per-req.py measures both).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N1=${N1:-100} N2=${N2:-400}
revs=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do revs+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
benches=("$@")
[ ${#revs[@]} -gt 0 ] && [ ${#benches[@]} -gt 0 ] || { sed -n 2,17p "$0"; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

work=$(mktemp -d)
trap 'for d in "$work"/src-*; do [ -d "$d" ] && git worktree remove --force "$d" >/dev/null 2>&1; done; rm -rf "$work"' EXIT

count() { # binary bench n -> total instructions
	local out=$work/cg.out
	# Go preempts goroutines with signals, which callgrind (3.19) cannot
	# follow: it aborts on an assertion. Cooperative preemption only.
	(cd pkg/app && GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$1" -test.run '^$' -test.bench "^Benchmark$2" -test.benchtime "$3x" >/dev/null 2>"$work/vg.log") ||
		{ cat "$work/vg.log" >&2; exit 1; }
	sed -n 's/^summary: //p' "$out"
}

printf '%-12s %-24s %14s\n' revision benchmark instructions/op
for rev in "${revs[@]}"; do
	bin=$work/bench-$(echo "$rev" | tr -c 'A-Za-z0-9\n' _).test
	if [ "$rev" = WORKTREE ]; then
		go test -c -o "$bin" ./pkg/app/
	else
		src=$work/src-$(basename "$bin" .test)
		git worktree add -q --detach "$src" "$rev"
		(cd "$src" && go test -c -o "$bin" ./pkg/app/)
	fi
	for b in "${benches[@]}"; do
		i1=$(count "$bin" "$b" "$N1")
		i2=$(count "$bin" "$b" "$N2")
		printf '%-12s %-24s %14d\n' "$rev" "$b" $(((i2 - i1) / (N2 - N1)))
	done
done
