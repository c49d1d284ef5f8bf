#!/bin/sh
log=/out/log
# The verdict, then stay alive: as a container's init, exiting would kill
# the pid namespace and the skiff process under attack with it.
finish() { echo "$1" >> $log; exec sleep 3600; }
end=$(( $(date +%s) + 30 ))
while :; do
  for p in /proc/[0-9]*; do
    [ "$p" = "/proc/$$" ] && continue
    case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in
      *"skiff-under-attack --root"*) ;;
      *) continue ;;
    esac
    echo "saw ${p#/proc/}" >> $log
    # A failed redirection of `exec` would end the shell: try in a subshell.
    if (exec 3< "$p/exe") 2>> $log; then
      exec 3< "$p/exe"
      echo "held $(readlink /proc/self/fd/3)" >> $log
      break 2
    fi
    finish "denied"
  done
  [ $(date +%s) -lt $end ] || finish "no skiff process seen"
done
while [ $(date +%s) -lt $end ]; do
  if printf pwned 2> /out/err > /proc/self/fd/3; then
    finish "OVERWRITTEN"
  fi
  grep -q busy /out/err || finish "refused: $(cat /out/err)"
  sleep 0.05
done
finish "still busy: $(cat /out/err)"
