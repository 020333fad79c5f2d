#!/bin/sh
# Gives the freshly linked library its installed names, in the directory given (native/target):
#
#   libpsiskv.so.X.Y.Z   the library itself (X.Y.Z: PSISKV_VERSION_STRING of c-headers/psiskv.h)
#   libpsiskv.so.X       -> libpsiskv.so.X.Y.Z   the soname: what a program's DT_NEEDED names
#   libpsiskv.so         -> libpsiskv.so.X       what -lpsiskv and JNA ("psiskv") look for
#
# the layout build-scripts/install-libpsiskv installs, so the build tree and an installed prefix
# look alike. The native-maven-plugin links target/libpsiskv.so as a regular file on every build
# (ld replaces a symbolic link there by a new file); this moves it to its versioned name. The
# header is the one owner of the version: this refuses (exit 1) a header whose
# PSISKV_VERSION_MAJOR/_MINOR/_PATCH do not make its PSISKV_VERSION_STRING, and a library whose
# soname is not libpsiskv.so.X for the header's major version X, so that the soname in
# native/pom.xml and the header cannot drift apart.
#
#   sh library-names.sh DIR HEADER
set -eu

dir=$1
header=$2
fail() { echo "library-names: $*" >&2; exit 1; }

version=$(sed -n 's/^#define PSISKV_VERSION_STRING "\([0-9]*\.[0-9]*\.[0-9]*\)"$/\1/p' "$header")
[ -n "$version" ] || fail "no PSISKV_VERSION_STRING \"X.Y.Z\" in $header"
major=${version%%.*}
# The three numbers must say the same as the string.
macro() { sed -n "s/^#define PSISKV_VERSION_$1 \([0-9]*\)$/\1/p" "$header"; }
[ "$(macro MAJOR).$(macro MINOR).$(macro PATCH)" = "$version" ] ||
  fail "PSISKV_VERSION_MAJOR, _MINOR and _PATCH in $header do not make $version"

cd "$dir"
if [ -f libpsiskv.so ] && [ ! -L libpsiskv.so ]; then
  mv -f libpsiskv.so "libpsiskv.so.$version"
fi
[ -f "libpsiskv.so.$version" ] && [ ! -L "libpsiskv.so.$version" ] ||
  fail "$dir/libpsiskv.so.$version is missing: was the library linked?"

soname=$(readelf -d "libpsiskv.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
[ "$soname" = "libpsiskv.so.$major" ] ||
  fail "the library's soname is '$soname', the header's version $version wants libpsiskv.so.$major"

ln -sfn "libpsiskv.so.$version" "libpsiskv.so.$major"
ln -sfn "libpsiskv.so.$major" libpsiskv.so
