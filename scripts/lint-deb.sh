#!/usr/bin/env bash
# lint-deb.sh runs Debian's lintian on the packages that `make packages` built
# (bin/edgegw_*.deb) and fails if it reports an error (E:). Warnings (W:) are
# printed and allowed. Overrides ship in the package
# (/usr/share/lintian/overrides/edgegw, from packaging/deb/lintian-overrides),
# each with its reason.
#
# Usage: scripts/lint-deb.sh [DEB]...   (default: every bin/edgegw_*.deb)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v lintian >/dev/null; then
	echo "lint-deb: lintian is missing: run scripts/test-deps.sh (package lintian)" >&2
	exit 1
fi
debs=("$@")
if ((${#debs[@]} == 0)); then
	shopt -s nullglob
	debs=(bin/edgegw_*.deb)
fi
if ((${#debs[@]} == 0)); then
	echo "lint-deb: no bin/edgegw_*.deb: run make packages" >&2
	exit 1
fi

status=0
for deb in "${debs[@]}"; do
	# lintian exits non-zero for errors and warnings alike (fail-on default);
	# judge by the tags instead. It warns about running as root, which CI does.
	out=$(lintian --fail-on none --tag-display-limit 0 "$deb" 2>&1 | grep -v '^running with root privileges' || true)
	errors=$(grep -c '^E: ' <<<"$out" || true)
	warnings=$(grep -c '^W: ' <<<"$out" || true)
	echo "lintian $(basename "$deb"): $errors errors, $warnings warnings"
	if [[ -n $out ]]; then
		sed 's/^/  /' <<<"$out"
	fi
	if ((errors > 0)); then
		status=1
	fi
done
exit $status
