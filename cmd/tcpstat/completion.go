package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/clidoc"
	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/topview"
)

// stateNames are the states and groups as ss's filters and list --state
// spell them.
var stateNames = []string{
	"established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait", "closed",
	"close-wait", "last-ack", "listening", "closing",
	"all", "connected", "synchronized", "bucket", "big",
}

// filterWords are the words of a filter expression (docs/filter.md).
func filterWords() []string {
	return append(filter.Keywords(), "and", "or", "not")
}

// spec is the command line as completion scripts and man pages see it.
func spec(app *cli.App) clidoc.Spec {
	var sorts []string
	for k := topview.ByAge; k <= topview.ByRemote; k++ {
		sorts = append(sorts, k.String())
	}
	s := clidoc.FromApp(app, clidoc.Values{
		"color": {"auto", "always", "never"},
		"sort":  sorts,
		"state": stateNames,
	}, "watch", "top", "list")
	s.Words, s.StateWord, s.States = filterWords(), "state", stateNames
	for i, c := range s.Commands {
		if c.Name == "completion" {
			s.Commands[i].Args = []string{"bash", "zsh", "fish"}
		}
	}
	return s
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "The script completes commands, flags, sort keys, state names and filter keywords.\n" +
			"Install it where your shell looks (see README.md), or load it in the running shell:\n" +
			"source <(tcpstat completion bash).",
		Action: func(c *cli.Context) error {
			s := spec(c.App)
			switch shell := c.Args().First(); {
			case c.NArg() != 1:
				return fmt.Errorf("completion takes one shell: bash, zsh or fish")
			case shell == "bash":
				return clidoc.Bash(c.App.Writer, s)
			case shell == "zsh":
				return clidoc.Zsh(c.App.Writer, s)
			case shell == "fish":
				return clidoc.Fish(c.App.Writer, s)
			default:
				return fmt.Errorf("completion %q: want bash, zsh or fish", shell)
			}
		},
	}
}

// manCommand writes the man pages (make man); hidden: it is for packagers.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man-pages",
		Hidden: true,
		Usage:  "write the man pages into DIR",
		Flags:  []cli.Flag{&cli.StringFlag{Name: "dir", Value: "man", Usage: "write the pages into `DIR`"}},
		Action: func(c *cli.Context) error {
			return clidoc.Man(c.String("dir"), spec(c.App))
		},
	}
}
