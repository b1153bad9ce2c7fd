#!/usr/bin/env bash
# Build :core and run its JUnit 5 tests on a plain JVM, without Gradle, Maven or the Android SDK.
#
#   apps/android/core/jvm-test.sh [--build-only] [-- extra ConsoleLauncher arguments]
#
# Tools: a JDK 17 (javac/java), JetBrains' Kotlin compiler from npm (`kotlin-compiler`, installed into
# ~/.cache/edgediff on first use), and from Debian: the JUnit 5 console launcher (junit5), JNA (libjna-java) and
# org.json (libandroid-json-java, the org.json Android ships). .ci/system-deps.sh installs the Debian ones.
#
# Test inputs (passed to the JVM as system properties; tests that need a missing one fail on CI, skip elsewhere):
#   EDGEDIFF_TESTDATA  folder from apps/android/tools/prepare_test_data.py (bundles, numpy noise, host images)
#   PYTHON             the Python whose onnxruntime / ai-edge-litert wheels hold the native libraries
# The last line printed is the JUnit summary as "N passed, N failed, N skipped". Exit: 0 all passed, 1 a test
# failed, 3 a tool is missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
BUILD=${EDGEDIFF_CORE_BUILD:-$HERE/build/jvm}
KOTLIN_VERSION=2.4.20
CACHE=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/edgediff
BUILD_ONLY=0
EXTRA=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --build-only) BUILD_ONLY=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "jvm-test: unknown argument $1" >&2; exit 2 ;;
    esac
done

missing() { echo "jvm-test: missing tool: $*" >&2; exit 3; }

command -v java >/dev/null 2>&1 || missing "java (apt-get install openjdk-17-jdk-headless)"

# --- Debian jars --------------------------------------------------------------------------------------------
find_jar() { # package, file name
    local path
    path=$(dpkg -L "$1" 2>/dev/null | grep -E "/$2\$" | head -n1 || true)
    [[ -n $path && -f $path ]] || path=/usr/share/java/$2
    [[ -f $path ]] && echo "$path"
}
jars() {
    JUNIT=$(find_jar junit5 junit-platform-console-standalone.jar || true)
    JNA=$(find_jar libjna-java jna.jar || true)
    JSON=$(find_jar libandroid-json-java com.android.json.jar || true)
}
jars
if [[ -z $JUNIT || -z $JNA || -z $JSON ]] && [[ -x $REPO/.ci/system-deps.sh ]]; then
    bash "$REPO/.ci/system-deps.sh" >&2 || true
    jars
fi
[[ -n $JUNIT ]] || missing "JUnit 5 console launcher (apt-get install junit5)"
[[ -n $JNA ]] || missing "JNA (apt-get install libjna-java)"
[[ -n $JSON ]] || missing "org.json (apt-get install libandroid-json-java)"

# --- Kotlin compiler ----------------------------------------------------------------------------------------
KOTLINC=${KOTLINC:-}
if [[ -z $KOTLINC ]]; then
    prefix=$CACHE/kotlin-compiler-$KOTLIN_VERSION
    KOTLINC=$prefix/node_modules/kotlin-compiler/bin/kotlinc
    if [[ ! -x $KOTLINC ]]; then
        command -v npm >/dev/null 2>&1 || missing "npm, to install the Kotlin compiler (apt-get install npm)"
        echo "jvm-test: installing kotlin-compiler@$KOTLIN_VERSION from npm into $prefix" >&2
        mkdir -p "$prefix"
        npm install --silent --no-audit --no-fund --prefix "$prefix" "kotlin-compiler@$KOTLIN_VERSION" >&2 \
            || missing "kotlin-compiler@$KOTLIN_VERSION (npm install failed)"
    fi
fi
[[ -x $KOTLINC ]] || missing "kotlinc at $KOTLINC"
KOTLIN_LIB=$(cd "$(dirname "$KOTLINC")/../lib" && pwd)
STDLIB=$KOTLIN_LIB/kotlin-stdlib.jar

# --- compile (skipped when sources and tools are unchanged) ---------------------------------------------------
mkdir -p "$BUILD"
compile() { # name, classpath, output jar, extra kotlinc flags, source dirs...
    local name=$1 cp=$2 out=$3 flags=$4; shift 4
    local sources stamp
    mapfile -t sources < <(find "$@" -name '*.kt' | sort)
    stamp=$( (echo "$KOTLIN_VERSION $cp $flags"; cat "${sources[@]}") | sha256sum | cut -c1-64)
    if [[ -f $out && -f $out.stamp && $(cat "$out.stamp") == "$stamp" ]]; then
        return 0
    fi
    echo "jvm-test: compiling $name (${#sources[@]} files)" >&2
    rm -f "$out" "$out.stamp"
    # A one-shot compile of a few thousand lines: the client JIT (C1) and the serial collector start faster than
    # kotlinc's defaults and did the same work in a third of the CPU time here (19.6 s vs 61.8 s before, with the
    # two kotlinc runs this build used to make). JAVA_OPTS, when set, wins.
    JAVA_OPTS=${JAVA_OPTS:-"-Xmx1g -Xms256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"} \
        "$KOTLINC" -nowarn -jvm-target 17 $flags -cp "$cp" -d "$out" "${sources[@]}" 2>&1 | grep -v '^info: ' >&2 || true
    [[ -f $out ]] || { echo "jvm-test: compiling $name failed" >&2; exit 1; }
    echo "$stamp" >"$out.stamp"
}
# :core and its tests in one kotlinc run (one compiler start-up and one analysis of :core instead of two); the tests
# see :core's internals, as a Gradle test source set does. :core itself may use only org.json (what Android ships):
# the libraries only the tests have must not appear in its sources.
if test_only=$(grep -rlE '\b(com\.sun\.jna|org\.junit)\b' "$HERE/src/main/kotlin"); then
    echo "jvm-test: :core must not use JNA or JUnit (test-only libraries): $test_only" >&2
    exit 1
fi
compile core+tests "$JSON:$JNA:$JUNIT" "$BUILD/core-and-tests.jar" "" "$HERE/src/main/kotlin" "$HERE/src/test/kotlin"
[[ $BUILD_ONLY -eq 1 ]] && exit 0

# --- native runtimes from the Python wheels -------------------------------------------------------------------
PYTHON=${PYTHON:-}
if [[ -z $PYTHON ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=$(command -v python3 || true); fi
fi
ORT_LIB=${EDGEDIFF_ORT_LIB:-}
LITERT_LIB=${EDGEDIFF_LITERT_LIB:-}
if [[ -n $PYTHON ]]; then
    native=$("$PYTHON" - <<'EOF' 2>/dev/null || true
import glob, importlib.util, os
def first(module, pattern):
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return ""
    hits = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], pattern)))
    return hits[0] if hits else ""
print(first("onnxruntime", "capi/libonnxruntime.so*"))
print(first("ai_edge_litert", "libLiteRt.so"))
EOF
)
    [[ -n $ORT_LIB ]] || ORT_LIB=$(sed -n 1p <<<"$native")
    [[ -n $LITERT_LIB ]] || LITERT_LIB=$(sed -n 2p <<<"$native")
fi

# --- run -----------------------------------------------------------------------------------------------------
LOG=$BUILD/junit.log
rm -rf "$BUILD/reports"
set +e
java -Xss4m -Djna.nosys=false \
    -Dedgediff.repo="$REPO" \
    -Dedgediff.golden="$REPO/apps/golden" \
    -Dedgediff.testdata="${EDGEDIFF_TESTDATA:-}" \
    -Dedgediff.ort.lib="$ORT_LIB" \
    -Dedgediff.litert.lib="$LITERT_LIB" \
    -Dedgediff.ci="${CI:-}" \
    -jar "$JUNIT" \
    --class-path "$BUILD/core-and-tests.jar:$JSON:$JNA:$STDLIB" \
    --scan-class-path "$BUILD/core-and-tests.jar" \
    --disable-banner --details=tree --disable-ansi-colors \
    --reports-dir "$BUILD/reports" "${EXTRA[@]}" >"$LOG" 2>&1
rc=$?
set -e
cat "$LOG"
count() { grep -E "\[ *[0-9]+ tests $1 *\]" "$LOG" | grep -oE '[0-9]+' | head -n1 || echo 0; }
passed=$(count successful)
failed=$(count failed)
aborted=$(count aborted)
skipped=$(count skipped)
echo "$passed passed, $failed failed, $((aborted + skipped)) skipped"
if [[ $rc -ne 0 || $failed -ne 0 ]]; then exit 1; fi
exit 0
