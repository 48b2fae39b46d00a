# bench-summary.awk summarises `go test -bench` output: for each benchmark and
# each column, the mean over its runs with the minimum and maximum.
#
#   awk -v cols='msgs/s:%.0f p50-us:%.0f' [-v namewidth=46] -f scripts/bench-summary.awk FILE
#
# cols lists the metric units to show (as `go test -bench` prints them, e.g.
# msgs/s, p99-us) with a printf format for their values; a benchmark without
# a metric shows "-". Used by bench-store.sh and bench-bridge.sh.
/^Benchmark/ && NF > 4 {
	name = $1; sub(/-[0-9]+$/, "", name)
	if (!(name in seen)) { seen[name] = 1; order[++n] = name }
	for (i = 3; i < NF; i += 2) {
		k = name SUBSEP $(i+1); v = $i + 0
		sum[k] += v; cnt[k]++
		if (!(k in lo) || v < lo[k]) lo[k] = v
		if (!(k in hi) || v > hi[k]) hi[k] = v
	}
}
function cell(name, unit, fmt,   k) {
	k = name SUBSEP unit
	if (!(k in cnt)) return "-"
	return sprintf(fmt " (" fmt "-" fmt ")", sum[k] / cnt[k], lo[k], hi[k])
}
END {
	if (namewidth == "") namewidth = 32
	nc = split(cols, col, " ")
	for (c = 1; c <= nc; c++) {
		split(col[c], parts, ":")
		unit[c] = parts[1]; format[c] = parts[2]
	}
	line = sprintf("%-" namewidth "s", "benchmark")
	for (c = 1; c <= nc; c++) line = line sprintf(" %-24s", unit[c])
	print line
	for (j = 1; j <= n; j++) {
		b = order[j]
		line = sprintf("%-" namewidth "s", b)
		for (c = 1; c <= nc; c++) line = line sprintf(" %-24s", cell(b, unit[c], format[c]))
		print line
	}
}
