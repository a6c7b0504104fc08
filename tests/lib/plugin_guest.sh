# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Helpers for the storage plugin tests under a simulated guest (raw_guest,
# sparse_guest, raw_blockdev).  Source after simhost.sh.

# pg_device NAME DOMID ID PLUGIN FILE [KEY=VALUE]...: one [device] section,
# for sh_start_vproxyd's standard input.
pg_device() {
	local name=$1 dom=$2 id=$3 plugin=$4 file=$5 kv
	shift 5
	printf '[device %s]\nguest = %s\nid = %s\nplugin = %s\nfile = %s\n' \
		"$name" "$dom" "$id" "$plugin" "$file"
	for kv in "$@"; do
		printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"
	done
	echo
}

# pg_expect_error BACKEND ID WANT: device ID went to Closed with an error
# naming WANT.
pg_expect_error() {
	local be=$1 id=$2 want=$3 err
	sh_wait_xs "$be/$id/state" 6 10
	err=$(sh_xs_read "$be/$id/error") || err=
	[[ $err == *"$want"* ]] || { echo "FAIL: dev $id error \"$err\" lacks \"$want\""; exit 1; }
	echo "dev $id refused: $err"
}

# pg_guest_run DOMID STATUS WHAT GUEST-ARGS...: run the guest to the end
# (60 s at most); it must exit with STATUS.  WHAT names it in the failure.
pg_guest_run() {
	local dom=$1 want=$2 what=$3 st=0
	shift 3
	sh_guest_start "$dom" "$@"
	sh_guest_wait "$dom" 60 || st=$?
	((st == want)) && return
	if ((want)); then
		echo "FAIL: $what exited with $st, not $want"
	else
		echo "FAIL: $what exited with $st"
	fi
	exit 1
}

# pg_stop_vproxyd: vproxyd exits cleanly, with no sanitizer report.
pg_stop_vproxyd() {
	local st=0
	sh_stop_vproxyd || st=$?
	((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
	if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
		exit 1
	fi
}
