#!/usr/bin/env bash
# Compile the pure-Kotlin `core` module and run its JUnit 4 tests without Gradle or the Android SDK.
#
# Needs: a JDK (java, javac >= 17), the Kotlin compiler from the npm package `kotlin-compiler`
# (pinned below; installed into a cache folder on first use), Debian's JUnit 4 + Hamcrest
# (`apt-get install -y junit4 libhamcrest-java`: /usr/share/java/junit4.jar, hamcrest-core.jar).
#
# Warnings are errors in main and test sources (-Werror, no -nowarn).
#
# Usage: test_core.sh           compile, run every *Test class (JUnit 4)
#        test_core.sh --bench   compile, run the frame-conversion benchmark (FrameBenchmark.kt) instead
#
# Environment: KOTLIN_HOME (an unpacked kotlin-compiler, skips the npm step), MVIT_CACHE
# (default ~/.cache/mvit), JUNIT_JAR / HAMCREST_JAR (override the Debian paths),
# MVIT_DEVICE_RESULTS_OUT (BenchmarkReportTest also writes its device-results JSON there),
# CORE_BUILD_DIR (class output, default core/build/ci).
# Prints JUnit's summary and a closing "N passed, N failed" line; exits non-zero on any failure.
set -euo pipefail

KOTLIN_VERSION=2.4.20
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CORE="$HERE/../core"
CACHE="${MVIT_CACHE:-$HOME/.cache/mvit}"
BUILD="${CORE_BUILD_DIR:-$CORE/build/ci}"

die() { echo "test_core.sh: $*" >&2; exit 2; }
MODE=test
case "${1:-}" in
  "") ;;
  --bench) MODE=bench ;;
  *) die "unknown argument '$1' (usage: test_core.sh [--bench])" ;;
esac

command -v java >/dev/null || die "java not found (apt-get install -y openjdk-17-jdk-headless)"

# --- kotlinc from npm, pinned ---------------------------------------------------------------
if [[ -z "${KOTLIN_HOME:-}" ]]; then
  KOTLIN_HOME="$CACHE/kotlin-compiler-$KOTLIN_VERSION"
  if [[ ! -x "$KOTLIN_HOME/bin/kotlinc" || ! -f "$KOTLIN_HOME/lib/kotlin-compiler.jar" ]]; then
    command -v npm >/dev/null || die "npm not found: needed once to fetch kotlin-compiler@$KOTLIN_VERSION"
    echo "installing kotlin-compiler@$KOTLIN_VERSION from npm into $KOTLIN_HOME" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
    mkdir -p "$KOTLIN_HOME.partial"
    tar -xzf "$tmp"/kotlin-compiler-*.tgz -C "$KOTLIN_HOME.partial" --strip-components=1
    chmod +x "$KOTLIN_HOME.partial"/bin/* || true
    rm -rf "$KOTLIN_HOME" && mv "$KOTLIN_HOME.partial" "$KOTLIN_HOME"
  fi
fi
KOTLINC="$KOTLIN_HOME/bin/kotlinc"
[[ -x "$KOTLINC" ]] || die "no kotlinc in $KOTLIN_HOME"
STDLIB="$KOTLIN_HOME/lib/kotlin-stdlib.jar"

# --- JUnit 4 from Debian ----------------------------------------------------------------------
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
[[ -f "$JUNIT_JAR" ]] || die "$JUNIT_JAR missing (apt-get install -y junit4)"
[[ -f "$HAMCREST_JAR" ]] || HAMCREST_JAR=/usr/share/java/hamcrest.jar
[[ -f "$HAMCREST_JAR" ]] || die "hamcrest jar missing (apt-get install -y libhamcrest-java)"

# --- compile main, then tests, in one kotlinc run each ------------------------------------------
rm -rf "$BUILD" && mkdir -p "$BUILD/main" "$BUILD/test"
mapfile -t MAIN_SRC < <(find "$CORE/src/main/kotlin" -name '*.kt' | sort)
mapfile -t TEST_SRC < <(find "$CORE/src/test/kotlin" -name '*.kt' | sort)
[[ ${#MAIN_SRC[@]} -gt 0 && ${#TEST_SRC[@]} -gt 0 ]] || die "no Kotlin sources under $CORE/src"

# No android.* in core: it must stay a plain JVM module.
if grep -n -E '^\s*import\s+android(x)?\.' "${MAIN_SRC[@]}"; then die "core imports android.*"; fi

export JAVA_OPTS="${JAVA_OPTS:--Xmx1g} -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
start=$(date +%s)
"$KOTLINC" -jvm-target 17 -Werror -d "$BUILD/main" "${MAIN_SRC[@]}" 2>&1 \
  || die "core main sources do not compile (warnings are errors)"
"$KOTLINC" -jvm-target 17 -Werror -cp "$BUILD/main:$JUNIT_JAR:$HAMCREST_JAR" -d "$BUILD/test" "${TEST_SRC[@]}" 2>&1 \
  || die "core test sources do not compile (warnings are errors)"
echo "compiled core + tests in $(( $(date +%s) - start ))s" >&2

CP="$BUILD/test:$BUILD/main:$CORE/src/test/resources:$STDLIB:$JUNIT_JAR:$HAMCREST_JAR"
if [[ $MODE == bench ]]; then
  exec java -Xmx512m -cp "$CP" org.mvit.core.FrameBenchmarkKt
fi

# --- run every *Test class ---------------------------------------------------------------------
mapfile -t CLASSES < <(cd "$BUILD/test" && find . -name '*Test.class' ! -name '*$*' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
set +e
out="$(java -Xmx512m -Dmvit.appAssets="$HERE/../app/src/main/assets" -Dmvit.deviceResultsOut="${MVIT_DEVICE_RESULTS_OUT:-}" \
  -cp "$CP" org.junit.runner.JUnitCore "${CLASSES[@]}" 2>&1)"
rc=$?
set -e
echo "$out"
# JUnit 4 prints "OK (N tests)" or "Tests run: N,  Failures: F"; add the plain closing line.
if [[ "$out" =~ OK\ \(([0-9]+)\ test ]]; then
  echo "kotlin-core: ${BASH_REMATCH[1]} passed, 0 failed"
elif [[ "$out" =~ Tests\ run:\ ([0-9]+),\ +Failures:\ ([0-9]+) ]]; then
  echo "kotlin-core: $(( BASH_REMATCH[1] - BASH_REMATCH[2] )) passed, ${BASH_REMATCH[2]} failed"
fi
exit $rc
