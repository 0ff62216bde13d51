#!/usr/bin/env bash
# Build jars/pulse-connectors.jar with Maven (called by `make jars`).
# On failure, say why in one line; when the cause is the repository (unreachable, or the
# connector artifacts not served), also record that line in jars/.unavailable so that the
# tests that need the JAR can say why they are skipped.
set -uo pipefail
cd "$(dirname "$0")"
MVN=${MVN:-mvn}
log=target-build.log
# PULSE_MAVEN_REPOSITORY: one extra repository URL for the connectors (a company mirror, or a
# file:// repository) where the repository Maven reaches does not serve them; unset on Maven Central.
repo_args=()
if [ -n "${PULSE_MAVEN_REPOSITORY:-}" ]; then
  repo_args=("-Dpulse.maven.repository=$PULSE_MAVEN_REPOSITORY")
  echo "jars: extra Maven repository $PULSE_MAVEN_REPOSITORY (PULSE_MAVEN_REPOSITORY)"
fi
rm -f .unavailable
command -v "$MVN" >/dev/null || { echo "jars: Maven ($MVN) not found (README: prerequisites)"; exit 1; }
echo "jars: building pulse-connectors.jar with Maven (the first run downloads the connectors)"
# -U: re-ask the repository for artifacts it did not have last time, instead of Maven's cached "not found".
if "$MVN" -B -q -U package -DskipTests "${repo_args[@]}" >"$log" 2>&1; then
  cp target/pulse-connectors.jar pulse-connectors.jar
  rm -f "$log"
  echo "jars: built jars/pulse-connectors.jar"
  exit 0
fi
# Maven says "Could not find artifact G:A:jar:V in central" (or "... was not found in URL" when cached).
missing=$(grep -oE "(Could not find artifact [^ ]+|[^ ]+ was not found in)" "$log" | sed -E 's/^Could not find artifact //; s/ was not found in$//' | sort -u | paste -sd, -)
if [ -n "$missing" ]; then
  reason="the Maven repository this machine reaches does not serve $missing (HTTP 404; set PULSE_MAVEN_REPOSITORY, README); see jars/$log"
elif grep -qiE "could not transfer|unknownhost|unknown host|connect timed out|network is unreachable|connection refused" "$log"; then
  reason="Maven cannot reach its repository (Maven Central); see jars/$log"
else
  echo "jars: Maven build failed; see jars/$log"; tail -20 "$log"; exit 1
fi
echo "jars: $reason"
echo "$reason" > .unavailable
exit 1
