#!/usr/bin/env bash
# Runs every fuzz target of the repository, one at a time: each
# `func FuzzXxx(f *testing.F)` found in a *_test.go file is fuzzed for
# $FUZZTIME, so a target added anywhere is picked up without editing this.
#
#   FUZZTIME          time (or count, "500x") per target; default 60s
#   FUZZMINIMIZETIME  time to minimize a new input; default 10s. Go's default
#                     is 60s, and minimizing is quadratic in the input's size:
#                     with large inputs a worker spent the whole run there,
#                     counting no executions (the FuzzReadFLV "stall").
#   FUZZPARALLEL      workers per target; default GOMAXPROCS (the core count)
#   FUZZ              regexp: only targets whose name matches (default all)
#
# Each package is built once with fuzzing instrumentation and its binary run
# per target in the package's directory, as `go test -fuzz` would: the fuzz
# cache goes to $(go env GOCACHE)/fuzz and a failing input is written to
# <package>/testdata/fuzz/FuzzXxx/, where plain `go test` replays it. Exits 1
# when any target fails or does not build, after printing every failing
# input's path and a summary of executions per target.
set -uo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-10s}
FUZZPARALLEL=${FUZZPARALLEL:-}
FUZZ=${FUZZ:-.}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2

# seconds of a Go duration made of h/m/s parts ("90s", "1m30s"); empty for a
# count ("500x") or anything else.
seconds() {
	local d=$1 total=0 n unit
	[[ $d =~ ^([0-9]+[hms])+$ ]] || return 0
	while [[ $d =~ ^([0-9]+)([hms])(.*)$ ]]; do
		n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} d=${BASH_REMATCH[3]}
		case $unit in h) n=$((n * 3600)) ;; m) n=$((n * 60)) ;; esac
		total=$((total + n))
	done
	echo "$total"
}

# A run past fuzztime plus this margin (build, seed corpus, a last
# minimization, shutdown) is stuck: it is killed and counted as failed.
fuzzsecs=$(seconds "$FUZZTIME")
minsecs=$(seconds "$FUZZMINIMIZETIME")
limit=$(( ${fuzzsecs:-1800} + ${minsecs:-60} + 120 ))

# Targets: "dir name" lines, sorted, from every *_test.go outside testdata,
# vendor and dot directories.
mapfile -t targets < <(
	find . \( -name testdata -o -name vendor -o -name '.*' ! -name . \) -prune -o \
		-name '*_test.go' -type f -print |
		xargs grep -HE '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' |
		sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' |
		awk -v re="$FUZZ" '$2 ~ re' | sort -u
)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets match FUZZ=$FUZZ" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, FUZZTIME=$FUZZTIME each, FUZZMINIMIZETIME=$FUZZMINIMIZETIME"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cachedir=$($GO env GOCACHE)/fuzz
parallel=()
[ -n "$FUZZPARALLEL" ] && parallel=(-test.parallel="$FUZZPARALLEL")

summary=()
failed=0
built=""
start=$SECONDS
for t in "${targets[@]}"; do
	dir=${t% *} name=${t#* }
	bin=$tmp/$(echo "$dir" | tr '/.' '__').test
	if [ "$built" != "$dir" ]; then
		built=$dir
		rm -f "$tmp"/*.test
		# -fuzz only turns on the instrumentation here; the target is
		# chosen when the binary runs.
		if ! $GO test -c -fuzz=. -o "$bin" "$dir" >"$tmp/build.log" 2>&1; then
			cat "$tmp/build.log"
		fi
		pkg=$($GO list "$dir" 2>/dev/null || echo "$dir")
	fi
	if [ ! -x "$bin" ]; then
		echo "FAIL $name ($dir): test binary did not build"
		summary+=("$(printf '%-28s %-28s %12s %9s %6s %6s %6s  %s' "$name" "$dir" - - - - - "FAIL (build)")")
		failed=1
		continue
	fi
	echo "=== fuzz $name ($dir)"
	t0=$SECONDS
	(cd "$dir" && timeout -k 10 "$limit" "$bin" -test.run='^$' -test.fuzz="^${name}\$" \
		-test.fuzztime="$FUZZTIME" -test.fuzzminimizetime="$FUZZMINIMIZETIME" \
		-test.fuzzcachedir="$cachedir/$pkg" -test.timeout="${limit}s" -test.paniconexit0 \
		"${parallel[@]}") >"$tmp/out.log" 2>&1
	rc=$?
	secs=$((SECONDS - t0))
	# The coordinator's last progress line has the totals:
	# "fuzz: elapsed: 3s, execs: 60998 (20328/sec), new interesting: 34 (total: 36)"
	last=$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$tmp/out.log" | tail -1)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	newin=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	# Still replaying the seed and cached corpus when time ran out.
	[ -z "$execs" ] && execs=$(sed -nE 's/.*gathering baseline coverage: ([0-9]+\/[0-9]+).*/corpus \1/p' "$tmp/out.log" | tail -1)
	# Longest stretch of progress lines (3s apart) counting no execution:
	# the workers were minimizing. (An input running over 10s is a crash:
	# Go's worker panics, and the input is saved.)
	stall=$(grep -E '^fuzz: elapsed: .*execs: ' "$tmp/out.log" | head -n -1 |
		awk '/ \(0\/sec\)/ {n++; if (n > m) m = n; next} {n = 0} END {print 3 * m}')
	rate=-
	[[ $execs =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] && rate=$((execs / secs))
	result=ok
	if [ $rc -ne 0 ] || grep -q -- '^--- FAIL' "$tmp/out.log"; then
		result=FAIL
		[ $rc -eq 124 ] || [ $rc -eq 137 ] && result="FAIL (no end after ${limit}s)"
		failed=1
		cat "$tmp/out.log"
		# Name the failing input by its path from the repository root.
		while read -r f; do
			echo "FAILING INPUT: $dir/$f"
			echo "  replay: $GO test -run '^$name/$(basename "$f")\$' $dir"
		done < <(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$tmp/out.log")
	elif grep -q 'no fuzz tests to fuzz' "$tmp/out.log"; then
		result="SKIP (not built: build tags?)"
	else
		echo "$last"
	fi
	summary+=("$(printf '%-28s %-28s %12s %9s %6s %5ss %5ss  %s' "$name" "$dir" "${execs:--}" "$rate" "${newin:--}" "$stall" "$secs" "$result")")
done

echo
echo "fuzz summary (FUZZTIME=$FUZZTIME, $((SECONDS - start))s in all):"
printf '%-28s %-28s %12s %9s %6s %6s %6s  %s\n' target package execs execs/s new stall wall result
printf '%s\n' "${summary[@]}"
exit $failed
