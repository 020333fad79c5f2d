# Sourced by the scripts that run psiskv-server.jar (psiskv-server, psiskv-check, psiskv-cli): sets $root,
# $jar and $classpath, and builds the jar when it is missing or older than the sources.
#
# The jar is rebuilt (mvn -DskipTests package, output on stderr) when any file under
# servers/src/main, java-client/src/main or native/src, or a pom.xml, is newer than it: the jar
# is made of those. Test sources are not in the jar and start no build.
#
# PSISKV_CLASSPATH, if set, is the classpath used instead of the jar, and nothing is built: the
# tests run the scripts on the classes they just compiled.

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
jar="$root/servers/target/psiskv-server.jar"

# Prints the first source newer than the jar, if any.
psiskv_newer_source() {
  find "$root/servers/src/main" "$root/java-client/src/main" "$root/native/src" \
       "$root/pom.xml" "$root/servers/pom.xml" "$root/java-client/pom.xml" \
       "$root/native/pom.xml" -newer "$jar" -type f -print -quit 2>/dev/null
}

# $1: the calling script's name, for its messages.
psiskv_jar() {
  if [ -n "${PSISKV_CLASSPATH:-}" ]; then
    classpath="$PSISKV_CLASSPATH"
    return
  fi
  local why=""
  if [ ! -f "$jar" ]; then
    why="$jar is missing"
  else
    local newer
    newer="$(psiskv_newer_source)"
    [ -z "$newer" ] || why="${newer#"$root"/} is newer than the jar"
  fi
  if [ -n "$why" ]; then
    echo "$1: $why; building it (mvn -DskipTests package)" >&2
    "$root/build-scripts/install-build-deps" >&2
    (cd "$root" && mvn -B -ntp -q -DskipTests package) >&2
  fi
  classpath="$jar"
}
