#!/bin/sh
# eve-tasks: refuses to start nats-server with a missing, empty or weak password.
#
# nats-server reads the passwords of permissions.conf from the environment ($EVE_NATS_*_PASSWORD).
# An unset variable stops it, but an EMPTY one is accepted and makes a user with no password, who
# can then connect without one. This check runs before it (ExecStartPre= of
# eve-tasks-nats.service): every $EVE_NATS_..._PASSWORD referenced by the config and the files it
# includes must be set, at least 16 characters long, letters and digits only, starting with a
# letter: nats-server parses the value as config, so a leading digit makes it a number (and the
# config fails) and `$`, `#`, quotes or spaces are misread. `echo p$(openssl rand -hex 24)` gives one.
#
# usage: check-passwords.sh <nats-server config file>
set -eu

config=${1:?usage: check-passwords.sh <nats-server config file>}
[ -r "$config" ] || { echo "check-passwords: cannot read $config" >&2; exit 1; }

# The config and the files it includes (one level deep, which is how deploy/nats/ is laid out).
dir=$(dirname "$config")
files=$config
for inc in $(sed -n 's/^[[:space:]]*include[[:space:]]\{1,\}["]\{0,1\}\([^"[:space:]]*\)["]\{0,1\}.*$/\1/p' "$config"); do
  case $inc in
    /*) files="$files $inc" ;;
    *) files="$files $dir/$inc" ;;
  esac
done

names=$(cat $files | sed 's/#.*//' | grep -o '\$EVE_NATS_[A-Z0-9_]*PASSWORD' | sed 's/^\$//' | sort -u)
[ -n "$names" ] || { echo "check-passwords: no \$EVE_NATS_*_PASSWORD in $files" >&2; exit 1; }

bad=0
for name in $names; do
  eval "set=\${$name+x} value=\${$name-}"
  if [ -z "$set" ]; then
    echo "check-passwords: $name is not set" >&2; bad=1
  elif [ -z "$value" ]; then
    echo "check-passwords: $name is empty (nats-server would make a user with no password)" >&2; bad=1
  elif [ ${#value} -lt 16 ]; then
    echo "check-passwords: $name is shorter than 16 characters" >&2; bad=1
  elif ! printf '%s' "$value" | grep -Eq '^[A-Za-z][A-Za-z0-9]*$'; then
    echo "check-passwords: $name must be letters and digits only, starting with a letter" >&2; bad=1
  fi
done
exit $bad
