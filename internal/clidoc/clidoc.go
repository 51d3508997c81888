// Package clidoc writes what a shell and man need from tcpstat's command
// definitions: completion scripts for bash, zsh and fish, and man pages in
// roff. Both are written here from the definitions, without cli's
// documentation generator, which the release build leaves out (the
// urfave_cli_no_docs tag) because its initialisation slows every start.
package clidoc

import (
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Spec is the command line as the completion scripts and man pages see it.
type Spec struct {
	Name     string
	Usage    string
	Version  string
	Flags    []Flag // global flags
	Commands []Command
	// Words are what a command's positional arguments complete to (the
	// filter expression's keywords); StateWord is the keyword after which
	// state names complete, and States those names.
	Words     []string
	StateWord string
	States    []string
}

// Command is one subcommand.
type Command struct {
	Name, Usage, Description, UsageText, ArgsUsage string
	Flags                                          []Flag
	// Positional: the command takes arguments (a filter expression).
	Positional bool
	// Args are the words its first argument completes to, if a fixed set.
	Args []string
	// Sub are its own subcommands (filter explain).
	Sub []Command
}

// Flag is one flag with all its names.
type Flag struct {
	Long, Short []string // without dashes
	Usage       string
	Arg         string   // the value's placeholder; "" for a switch
	Values      []string // what the value completes to, if a fixed set
}

// Values give flags whose value is one of a fixed set their candidates,
// by long name (e.g. "color": auto, always, never).
type Values map[string][]string

// FromApp reads the visible commands and flags of app. Commands that parse
// their own flags (SkipFlagParsing) list them in their UsageText, as
// "-t --tcp" pairs; those are read from there. positional names the
// commands that take arguments.
func FromApp(app *cli.App, values Values, positional ...string) Spec {
	s := Spec{Name: app.Name, Usage: app.Usage, Version: app.Version, Flags: flags(app.VisibleFlags(), values)}
	for _, c := range app.VisibleCommands() {
		cmd := Command{Name: c.Name, Usage: c.Usage, Description: c.Description, ArgsUsage: c.ArgsUsage,
			Positional: slices.Contains(positional, c.Name)}
		if c.SkipFlagParsing {
			cmd.UsageText = c.UsageText
			cmd.Flags = usageFlags(c.UsageText, values)
		} else {
			cmd.Flags = flags(c.VisibleFlags(), values)
		}
		for _, sc := range c.VisibleCommands() {
			if sc.Name != "help" {
				cmd.Sub = append(cmd.Sub, Command{Name: sc.Name, Usage: sc.Usage, ArgsUsage: sc.ArgsUsage})
				cmd.Args = append(cmd.Args, sc.Name)
			}
		}
		s.Commands = append(s.Commands, cmd)
	}
	return s
}

func flags(fs []cli.Flag, values Values) []Flag {
	var out []Flag
	for _, f := range fs {
		var fl Flag
		for _, n := range f.Names() {
			if len(n) == 1 {
				fl.Short = append(fl.Short, n)
			} else {
				fl.Long = append(fl.Long, n)
			}
		}
		if d, ok := f.(cli.DocGenerationFlag); ok {
			fl.Usage = d.GetUsage()
			if d.TakesValue() {
				fl.Arg = placeholder(fl.Usage)
			}
		}
		if len(fl.Long) > 0 {
			fl.Values = values[fl.Long[0]]
		}
		out = append(out, fl)
	}
	return out
}

// placeholder is the `NAME` a flag's usage quotes, as cli shows it.
func placeholder(usage string) string {
	if i := strings.IndexByte(usage, '`'); i >= 0 {
		if j := strings.IndexByte(usage[i+1:], '`'); j >= 0 {
			return usage[i+1 : i+1+j]
		}
	}
	return "VALUE"
}

// usageFlags reads the flags a hand-written usage text names: "--tcp",
// and "-t" standing alone (not the "-tanp" of an example). The expressions
// are compiled here, not at init: every start of tcpstat would pay.
func usageFlags(text string, values Values) []Flag {
	usageLong := regexp.MustCompile(`--[a-z][a-z0-9-]*`)
	usageShort := regexp.MustCompile(`(?:^|[\s|(])-([a-zA-Z0-9])\b`)
	var out []Flag
	seen := map[string]bool{}
	for _, l := range usageLong.FindAllString(text, -1) {
		if name := l[2:]; !seen[l] {
			seen[l] = true
			out = append(out, Flag{Long: []string{name}, Values: values[name]})
		}
	}
	for _, m := range usageShort.FindAllStringSubmatch(text, -1) {
		if !seen["-"+m[1]] {
			seen["-"+m[1]] = true
			out = append(out, Flag{Short: []string{m[1]}})
		}
	}
	return out
}

// words are a command's flags as typed, longest spelling first.
func (c Command) words() []string {
	var w []string
	for _, f := range c.Flags {
		for _, l := range f.Long {
			w = append(w, "--"+l)
		}
		for _, s := range f.Short {
			w = append(w, "-"+s)
		}
	}
	return w
}
