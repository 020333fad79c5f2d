#!/usr/bin/env bash
# build-scripts/install-libpsiskv, run as a user runs it, into temporary directories (never the
# system's): run-tests.sh runs this, with HOST PORT once the servers are up.
#
#   test_install.sh [HOST PORT]
#
# 1. --help exits 0 and names both options; an unknown option, an option without its value and a
#    relative prefix exit 2 with one line on stderr, and install nothing.
# 2. --prefix P (twice: installing again over an installation works): P/lib/libpsiskv.so.X.Y.Z
#    is a regular file, the library built in native/target, with the soname libpsiskv.so.X;
#    libpsiskv.so.X -> libpsiskv.so.X.Y.Z and libpsiskv.so -> libpsiskv.so.X, relative links;
#    P/include/psiskv.h is c-headers/psiskv.h; P/lib/pkgconfig/psiskv.pc answers pkg-config
#    with version X.Y.Z, -IP/include and -LP/lib -lpsiskv. (X.Y.Z: PSISKV_VERSION_STRING.)
# 3. test_installed.c, copied away from the source tree, builds with
#    $(pkg-config --cflags --libs psiskv) (PKG_CONFIG_PATH=P/lib/pkgconfig) and -Wl,-rpath,P/lib,
#    loads P's library (ldd) and runs: the calls that need no server, and with HOST PORT a round
#    trip on the server; built without the rpath, it runs with LD_LIBRARY_PATH=P/lib.
# 4. --destdir D --prefix /opt/psiskv-test: the same layout under D/opt/psiskv-test, a psiskv.pc
#    naming /opt/psiskv-test and never D, nothing at /opt/psiskv-test itself; a program builds
#    against the staged files (PKG_CONFIG_SYSROOT_DIR=D) and runs with LD_LIBRARY_PATH.
#    --destdir D alone: the default prefix, /usr/local, under D.
# Prints "test_install: N checks, M failed"; exits 1 on a failure, 2 when a tool is missing.
set -u
cd "$(dirname "$0")"

INSTALLER=../build-scripts/install-libpsiskv
HEADER=../c-headers/psiskv.h
BUILT_DIR=../native/target
STAGED_PREFIX=/opt/psiskv-test
CC=${CC:-gcc}
CFLAGS="-std=c99 -pedantic -Wall -Wextra -Werror"

for tool in pkg-config readelf ldd "$CC"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "test_install: $tool not found (build-scripts/install-build-deps installs it)" >&2
    exit 2
  }
done

version=$(sed -n 's/^#define PSISKV_VERSION_STRING "\(.*\)"$/\1/p' "$HEADER")
major=${version%%.*}
lib=libpsiskv.so.$version
server_args=("$@")

work=$(mktemp -d "${TMPDIR:-/tmp}/psiskv-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp test_installed.c "$work/"

checks=0
failures=0
# check WHAT COMMAND...: one check; the command's output is shown only when it fails.
check() {
  local what=$1 out
  shift
  checks=$((checks + 1))
  if ! out=$("$@" 2>&1); then
    failures=$((failures + 1))
    echo "test_install: FAIL $what" >&2
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/  | /' >&2
  fi
}

# equal WANT GOT
equal() {
  [ "$1" = "$2" ] || { echo "expected '$1', got '$2'"; return 1; }
}

# usage_error ARGS...: exit 2, exactly one line on stderr, no Java or shell trace, nothing made.
usage_error() {
  local rc out err
  out=$("$INSTALLER" --prefix "$work/never" "$@" 2>"$work/err")
  rc=$?
  err=$(cat "$work/err")
  equal 2 "$rc" || return 1
  equal "" "$out" || return 1
  equal 1 "$(wc -l <"$work/err")" || { echo "$err"; return 1; }
  case $err in install-libpsiskv:*) ;; *) echo "not the script's message: $err"; return 1 ;; esac
  [ ! -e "$work/never" ] || { echo "it installed something"; return 1; }
}

help_documents() {
  local out
  out=$("$INSTALLER" --help) || { echo "--help exited $?"; return 1; }
  case $out in *--prefix*--destdir*) ;; *) echo "$out"; return 1 ;; esac
}

# layout ROOT: the installed files under ROOT (a prefix, or a staged one).
layout() {
  local root=$1
  [ -f "$root/lib/$lib" ] && [ ! -L "$root/lib/$lib" ] || { echo "$root/lib/$lib: no file"; return 1; }
  cmp "$BUILT_DIR/$lib" "$root/lib/$lib" || return 1
  equal "libpsiskv.so.$major" \
    "$(readelf -d "$root/lib/$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')" || return 1
  equal "$lib" "$(readlink "$root/lib/libpsiskv.so.$major")" || return 1
  equal "libpsiskv.so.$major" "$(readlink "$root/lib/libpsiskv.so")" || return 1
  cmp "$HEADER" "$root/include/psiskv.h" || return 1
  [ -f "$root/lib/pkgconfig/psiskv.pc" ] || { echo "no psiskv.pc"; return 1; }
}

# pc_answers PREFIX [ROOT]: what pkg-config says from ROOT/PREFIX/lib/pkgconfig/psiskv.pc.
pc_answers() {
  local prefix=$1 root=${2:-} pc
  pc=$root$prefix/lib/pkgconfig
  equal "$version" "$(PKG_CONFIG_PATH=$pc pkg-config --modversion psiskv)" || return 1
  equal "$prefix" "$(PKG_CONFIG_PATH=$pc pkg-config --variable=prefix psiskv)" || return 1
  equal "-I$prefix/include" "$(PKG_CONFIG_PATH=$pc pkg-config --cflags psiskv | sed 's/ *$//')" ||
    return 1
  equal "-L$prefix/lib -lpsiskv" "$(PKG_CONFIG_PATH=$pc pkg-config --libs psiskv | sed 's/ *$//')"
}

# build_rpath PREFIX OUT: as the README says, for a prefix outside the system's paths.
build_rpath() {
  export PKG_CONFIG_PATH=$1/lib/pkgconfig
  # shellcheck disable=SC2046,SC2086 # pkg-config's output is a list of flags
  "$CC" $CFLAGS -o "$2" "$work/test_installed.c" $(pkg-config --cflags --libs psiskv) \
    -Wl,-rpath,"$1/lib"
}

build_plain() {
  export PKG_CONFIG_PATH=$1/lib/pkgconfig
  # shellcheck disable=SC2046,SC2086
  "$CC" $CFLAGS -o "$2" "$work/test_installed.c" $(pkg-config --cflags --libs psiskv)
}

# loads PROGRAM LIBDIR: the loader takes libpsiskv.so.X from LIBDIR, with no LD_LIBRARY_PATH.
loads() {
  local line
  line=$(env -u LD_LIBRARY_PATH ldd "$1" | grep "libpsiskv.so.$major ") || { ldd "$1"; return 1; }
  case $line in
    *"=> $2/libpsiskv.so.$major "*) ;;
    *) echo "$line"; return 1 ;;
  esac
}

runs() { env -u LD_LIBRARY_PATH "$1" "$version" "${server_args[@]}"; }

runs_with_library_path() { env LD_LIBRARY_PATH="$2" "$1" "$version" "${server_args[@]}"; }

# 1. usage
check "--help exits 0 and names --prefix and --destdir" help_documents
check "an unknown option exits 2 with one line" usage_error --no-such-option
check "--prefix without a value exits 2 with one line" usage_error --destdir "$work/d" --prefix
check "--destdir without a value exits 2 with one line" usage_error --destdir
check "a relative prefix exits 2 with one line" usage_error --prefix relative/dir

# 2. a prefix
prefix=$work/prefix
check "installs into a prefix" "$INSTALLER" --prefix "$prefix"
check "installs again over it" "$INSTALLER" --prefix "$prefix"
check "the prefix holds the library, its links, the header and psiskv.pc" layout "$prefix"
check "psiskv.pc names the prefix and the version" pc_answers "$prefix"

# 3. a program through pkg-config
check "a program builds with pkg-config and -rpath" build_rpath "$prefix" "$work/hello"
check "it loads the installed library" loads "$work/hello" "$prefix/lib"
check "it runs${server_args:+ against the server}" runs "$work/hello"
check "a program builds with pkg-config alone" build_plain "$prefix" "$work/hello_plain"
check "it runs with LD_LIBRARY_PATH" runs_with_library_path "$work/hello_plain" "$prefix/lib"

# 4. staged
stage=$work/stage
staged_pc_clean() {
  local pc=$stage$STAGED_PREFIX/lib/pkgconfig/psiskv.pc
  ! grep -F "$stage" "$pc" || { echo "psiskv.pc names the staging directory"; return 1; }
  [ ! -e "$STAGED_PREFIX" ] || { echo "$STAGED_PREFIX exists: installed outside DESTDIR?"; return 1; }
}
build_staged() {
  # shellcheck disable=SC2046,SC2086
  "$CC" $CFLAGS -o "$work/hello_staged" "$work/test_installed.c" \
    $(PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_LIBDIR=$stage$STAGED_PREFIX/lib/pkgconfig \
      pkg-config --cflags --libs psiskv)
}
check "installs with --destdir" "$INSTALLER" --prefix "$STAGED_PREFIX" --destdir "$stage"
check "the staged prefix holds the layout" layout "$stage$STAGED_PREFIX"
check "the staged psiskv.pc names the prefix" pc_answers "$STAGED_PREFIX" "$stage"
check "the staged psiskv.pc never names the staging directory" staged_pc_clean
check "a program builds against the staged files" build_staged
check "it runs with LD_LIBRARY_PATH" runs_with_library_path "$work/hello_staged" \
  "$stage$STAGED_PREFIX/lib"
check "--destdir alone stages the default prefix, /usr/local" \
  "$INSTALLER" --destdir "$work/default"
check "the default prefix holds the layout" layout "$work/default/usr/local"
check "its psiskv.pc names /usr/local" pc_answers /usr/local "$work/default"

echo "test_install: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
