package clidoc

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// valueFlags maps each flag that takes one of a fixed set of values, in
// any spelling, to those values.
func (s Spec) valueFlags() map[string][]string {
	m := map[string][]string{}
	add := func(fs []Flag) {
		for _, f := range fs {
			if len(f.Values) == 0 {
				continue
			}
			for _, l := range f.Long {
				m["--"+l] = f.Values
			}
			for _, sh := range f.Short {
				m["-"+sh] = f.Values
			}
		}
	}
	add(s.Flags)
	for _, c := range s.Commands {
		add(c.Flags)
	}
	return m
}

func (s Spec) commandNames() []string {
	var n []string
	for _, c := range s.Commands {
		n = append(n, c.Name)
	}
	return n
}

func globalWords(s Spec) []string {
	return Command{Flags: s.Flags}.words()
}

// Bash writes a bash completion script: `source <(tcpstat completion bash)`.
func Bash(w io.Writer, s Spec) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %[1]s; written by `%[1]s completion bash`.\n", s.Name)
	fmt.Fprintf(&b, "_%s() {\n", s.Name)
	b.WriteString("\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= i\n")
	b.WriteString("\tfor ((i = 1; i < COMP_CWORD; i++)); do\n")
	b.WriteString("\t\tcase ${COMP_WORDS[i]} in -*) ;; *) cmd=${COMP_WORDS[i]}; break ;; esac\n")
	b.WriteString("\tdone\n")
	b.WriteString("\tcase $prev in\n")
	vf := s.valueFlags()
	names := make([]string, 0, len(vf))
	for n := range vf {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", n, strings.Join(vf[n], " "))
	}
	if s.StateWord != "" {
		fmt.Fprintf(&b, "\t%s) [[ -n $cmd ]] && { COMPREPLY=($(compgen -W %q -- \"$cur\")); return; } ;;\n", s.StateWord, strings.Join(s.States, " "))
	}
	b.WriteString("\tesac\n\tcase $cmd in\n")
	fmt.Fprintf(&b, "\t'') COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", strings.Join(append(s.commandNames(), globalWords(s)...), " "))
	for _, c := range s.Commands {
		words := strings.Join(c.words(), " ")
		if c.Positional {
			fmt.Fprintf(&b, "\t%s) if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); else COMPREPLY=($(compgen -W %q -- \"$cur\")); fi ;;\n",
				c.Name, words, strings.Join(s.Words, " "))
		} else {
			fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c.Name, strings.Join(append(c.words(), c.Args...), " "))
		}
	}
	b.WriteString("\tesac\n}\n")
	fmt.Fprintf(&b, "complete -F _%[1]s %[1]s\n", s.Name)
	_, err := io.WriteString(w, b.String())
	return err
}

// zshQuote escapes text for a zsh _arguments description in single quotes.
func zshQuote(s string) string {
	s = strings.NewReplacer("`", "", "'", `'\''`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
	return s
}

// Zsh writes a zsh completion script, to be saved as _tcpstat in $fpath.
func Zsh(w io.Writer, s Spec) error {
	var b strings.Builder
	fmt.Fprintf(&b, "#compdef %[1]s\n# zsh completion for %[1]s; written by `%[1]s completion zsh`.\n\n", s.Name)
	fmt.Fprintf(&b, "_%s() {\n\tlocal -a commands\n\tcommands=(\n", s.Name)
	for _, c := range s.Commands {
		fmt.Fprintf(&b, "\t\t'%s:%s'\n", c.Name, zshQuote(c.Usage))
	}
	b.WriteString("\t)\n\tif (( CURRENT == 2 )); then\n")
	b.WriteString("\t\t_describe -t commands 'command' commands\n")
	b.WriteString("\t\t_arguments")
	for _, f := range s.Flags {
		b.WriteString(" \\\n\t\t\t" + zshFlag(f))
	}
	// The subcommand's arguments count from its name, as _arguments expects.
	b.WriteString("\n\t\treturn\n\tfi\n\tlocal cmd=$words[2]\n\tshift words\n\t(( CURRENT-- ))\n\tcase $cmd in\n")
	for _, c := range s.Commands {
		fmt.Fprintf(&b, "\t%s)\n\t\t_arguments -s", c.Name)
		for _, f := range c.Flags {
			b.WriteString(" \\\n\t\t\t" + zshFlag(f))
		}
		if c.Positional {
			fmt.Fprintf(&b, " \\\n\t\t\t'*:filter:(%s)'", strings.Join(append(append([]string{}, s.Words...), s.States...), " "))
		}
		if len(c.Args) > 0 {
			fmt.Fprintf(&b, " \\\n\t\t\t'1:argument:(%s)'", strings.Join(c.Args, " "))
		}
		b.WriteString("\n\t\t;;\n")
	}
	b.WriteString("\tesac\n}\n\n")
	fmt.Fprintf(&b, "_%s \"$@\"\n", s.Name)
	_, err := io.WriteString(w, b.String())
	return err
}

// zshFlag is one _arguments spec: '(--wide -W)'{--wide,-W}'[usage]'.
func zshFlag(f Flag) string {
	var names []string
	for _, l := range f.Long {
		names = append(names, "--"+l)
	}
	for _, sh := range f.Short {
		names = append(names, "-"+sh)
	}
	arg := ""
	if f.Arg != "" || len(f.Values) > 0 {
		action := " "
		if len(f.Values) > 0 {
			action = "(" + strings.Join(f.Values, " ") + ")"
		}
		arg = ":" + zshQuote(strings.ToLower(placeholderOr(f.Arg))) + ":" + action
	}
	desc := "[" + zshQuote(f.Usage) + "]"
	eq := ""
	if arg != "" {
		eq = "="
	}
	if len(names) == 1 {
		return "'" + names[0] + eq + desc + arg + "'"
	}
	spelled := make([]string, len(names))
	for i, n := range names {
		spelled[i] = n
		if eq != "" && strings.HasPrefix(n, "--") {
			spelled[i] += "=" // --port=443 or --port 443
		} else if eq != "" {
			spelled[i] += "+" // -p443 or -p 443
		}
	}
	return "'(" + strings.Join(names, " ") + ")'{" + strings.Join(spelled, ",") + "}'" + desc + arg + "'"
}

func placeholderOr(p string) string {
	if p == "" {
		return "value"
	}
	return p
}

// fishQuote quotes text for fish in single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer("`", "", `\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// Fish writes a fish completion script, to be saved as tcpstat.fish in
// ~/.config/fish/completions.
func Fish(w io.Writer, s Spec) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# fish completion for %[1]s; written by `%[1]s completion fish`.\n", s.Name)
	fmt.Fprintf(&b, "function __%s_prev_is\n\tset -l tokens (commandline -opc)\n\ttest (count $tokens) -gt 0; and test \"$tokens[-1]\" = $argv[1]\nend\n", s.Name)
	fmt.Fprintf(&b, "complete -c %s -f\n", s.Name)
	flag := func(cond string, f Flag) {
		fmt.Fprintf(&b, "complete -c %s -n %s", s.Name, fishQuote(cond))
		for _, sh := range f.Short {
			fmt.Fprintf(&b, " -s %s", sh)
		}
		for _, l := range f.Long {
			fmt.Fprintf(&b, " -l %s", l)
		}
		if len(f.Values) > 0 {
			fmt.Fprintf(&b, " -x -a %s", fishQuote(strings.Join(f.Values, " ")))
		} else if f.Arg != "" {
			b.WriteString(" -x")
		}
		if f.Usage != "" {
			fmt.Fprintf(&b, " -d %s", fishQuote(f.Usage))
		}
		b.WriteString("\n")
	}
	for _, f := range s.Flags {
		flag("__fish_use_subcommand", f)
	}
	for _, c := range s.Commands {
		fmt.Fprintf(&b, "complete -c %s -n __fish_use_subcommand -a %s -d %s\n", s.Name, c.Name, fishQuote(c.Usage))
	}
	var positional []string
	for _, c := range s.Commands {
		cond := "__fish_seen_subcommand_from " + c.Name
		for _, f := range c.Flags {
			flag(cond, f)
		}
		if c.Positional {
			positional = append(positional, c.Name)
		}
		if len(c.Args) > 0 {
			fmt.Fprintf(&b, "complete -c %s -n %s -a %s\n", s.Name, fishQuote(cond), fishQuote(strings.Join(c.Args, " ")))
		}
	}
	if len(positional) > 0 {
		seen := "__fish_seen_subcommand_from " + strings.Join(positional, " ")
		if s.StateWord != "" {
			fmt.Fprintf(&b, "complete -c %s -n %s -a %s\n", s.Name, fishQuote(seen+"; and __"+s.Name+"_prev_is "+s.StateWord), fishQuote(strings.Join(s.States, " ")))
			seen += "; and not __" + s.Name + "_prev_is " + s.StateWord
		}
		fmt.Fprintf(&b, "complete -c %s -n %s -a %s\n", s.Name, fishQuote(seen), fishQuote(strings.Join(s.Words, " ")))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
