# zsh zsh-complete.zsh DIR LINE: completes LINE in an interactive zsh whose
# fpath starts with DIR (where _tcpstat is), as a Tab would, and prints the
# candidates zsh was given, one a line. compadd is wrapped to print what it
# adds, then does its work.
zmodload zsh/zpty || exit 2
zpty z zsh -f -i
zpty -w z "PS1=''; PS2=''"
zpty -w z "fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z 'compadd() { if (( ${@[(I)-[OAD]]} )); then builtin compadd "$@"; return; fi; local -a hits; builtin compadd -O hits "$@"; (( $#hits )) && print -rl -- "HIT:"${^hits}; builtin compadd "$@"; }'
zpty -w z "zstyle ':completion:*' list-grouped false; bindkey '^I' complete-word; print READY"
local line
while zpty -r z line; do [[ $line == READY* ]] && break; done
zpty -w -n z "$2"$'\t'
local -a out
integer idle=0
# Candidates come within a few reads; stop after half a second of quiet.
while (( idle < 25 )); do
	if zpty -rt z line; then
		idle=0
		[[ $line == *HIT:* ]] && out+=("${${line##*HIT:}%%$'\r'}")
	else
		(( idle++ )); sleep 0.02
	fi
done
print -rl -- ${(u)out:#}
zpty -d z
