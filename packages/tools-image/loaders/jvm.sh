#!/eve/bin/sh
# The loader of the built-in runtime "jvm": runs the app's JAR on the image's JRE, sized from
# the task, as
#
#   java -Xmx<3/4 of EVE_TASK_MEMORY_MIB>m -XX:ActiveProcessorCount=<EVE_TASK_VCPUS>
#        -XX:+ExitOnOutOfMemoryError <EVE_JVM_OPTIONS> -jar /eve/artifacts/<jar> <process.args>
#
# and execs it, so the task's anchor (its PID) is the JVM. The JAR is the artifact named by
# EVE_JVM_JAR, else the one artifact whose name ends in .jar. EVE_JVM_OPTIONS (the app's
# process.env) holds extra JVM options, split on spaces. The rest of the task's memory (1/4) is
# for what is not heap: metaspace, code cache, thread stacks, direct buffers. A heap that runs
# out ends the JVM with a non-zero exit: the task is BROKEN, and its restart policy applies.
set -euf # no globbing: lists below are split on commas or spaces only

die() {
  echo "eve-tasks loader (jvm): $*" >&2
  exit 64
}

for v in EVE_TASK_MEMORY_MIB EVE_TASK_VCPUS; do
  eval "x=\${$v:-}"
  case $x in
    "" | *[!0-9]*) die "$v must be a whole number, not '$x': this loader runs as an eve-tasks runtime task" ;;
  esac
done

jar=${EVE_JVM_JAR:-}
if [ -z "$jar" ]; then
  old_ifs=$IFS
  IFS=,
  for a in ${EVE_TASK_ARTIFACTS:-}; do
    case $a in
      *.jar)
        [ -z "$jar" ] || die "more than one artifact ends in .jar ($jar, $a): name the JAR in process.env.EVE_JVM_JAR"
        jar=$a
        ;;
    esac
  done
  IFS=$old_ifs
fi
[ -n "$jar" ] || die "no JAR: give an artifact whose name ends in .jar, or name it in process.env.EVE_JVM_JAR"
case $jar in */* | . | ..) die "EVE_JVM_JAR must be an artifact's name, not '$jar'" ;; esac
[ -f "/eve/artifacts/$jar" ] || die "artifact $jar is not a file at /eve/artifacts/$jar"

heap=$((EVE_TASK_MEMORY_MIB * 3 / 4))
[ "$heap" -ge 1 ] || heap=1

# The app's arguments (all of "$@") go after the JAR; the loader's options are put in front.
app_args=$#
# shellcheck disable=SC2086 # EVE_JVM_OPTIONS is a list of options, split on spaces.
set -- "$@" "-Xmx${heap}m" "-XX:ActiveProcessorCount=$EVE_TASK_VCPUS" -XX:+ExitOnOutOfMemoryError \
  ${EVE_JVM_OPTIONS:-} -jar "/eve/artifacts/$jar"
while [ "$app_args" -gt 0 ]; do
  set -- "$@" "$1"
  shift
  app_args=$((app_args - 1))
done
exec /opt/eve-jre/bin/java "$@"
