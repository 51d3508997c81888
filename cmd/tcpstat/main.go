// Command tcpstat shows every TCP state transition on a Linux host, live,
// and the connection table they add up to.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"

	"github.com/tcpstat/tcpstat/internal/netstat"
)

func main() {
	if warning := raiseCapabilities(); warning != "" {
		fmt.Fprintf(os.Stderr, "tcpstat: warning: %s\n", warning)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpstat: %v\n", err)
		var exit cli.ExitCoder
		if errors.As(err, &exit) && exit.ExitCode() != 0 {
			os.Exit(exit.ExitCode())
		}
		os.Exit(1)
	}
}

// run executes the command line args (args[0] is the program name) with
// output to stdout and stderr; it returns instead of exiting.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp(stdout, stderr)
	app.Metadata = map[string]any{argsKey: args}
	return app.RunContext(ctx, args)
}

// argsKey keeps run's arguments in the app's metadata, for a command that
// hands them to another program (serve, to tcpstat-agent).
const argsKey = "args"

// commands are tcpstat's subcommands, the single source of its help,
// completion scripts and man pages.
func commands() []*cli.Command {
	cmds := []*cli.Command{
		watchCommand(),
		listCommand(),
		doctorCommand(),
		topCommand(),
		recordCommand(),
		replayCommand(),
		serveCommand(),
		filterCommand(),
		versionCommand(),
		completionCommand(),
		manCommand(),
	}
	for _, cmd := range cmds {
		teach(cmd)
	}
	return cmds
}

// examples are what people type, shown in each command's help.
var examples = map[string][]string{
	"watch": {
		"tcpstat watch --port 443            # every transition of HTTPS connections",
		"tcpstat watch -4 --json | jq .      # IPv4 only, one JSON object per line",
		"tcpstat watch | grep -E 'reset|timeout'",
	},
	"top": {
		"tcpstat top --sort state            # grouped by state",
		"tcpstat top comm nginx              # only nginx's connections",
		"tcpstat top -b -n 1 --json          # one refresh as JSON, for scripts",
	},
	"record": {
		"tcpstat record -w /var/lib/tcpstat/ --rotate-size 64M --max-size 1G",
		"tcpstat record -w incident.tcprec --port 443",
	},
	"replay": {
		"tcpstat replay --json /var/lib/tcpstat/ --from 03:10 --to 03:15",
		"tcpstat replay --at 03:12:07 /var/lib/tcpstat/ -- dport = :443",
		"tcpstat replay /var/lib/tcpstat/ -- comm nginx and reason reset",
	},
	"list": {
		"tcpstat list -tanp                  # every TCP socket with its program",
		"tcpstat list -tln                   # TCP listeners, numeric",
		"tcpstat list --state time-wait --summary",
	},
	"doctor": {
		"tcpstat doctor                      # what works on this kernel",
		"tcpstat doctor --json",
	},
	"version": {
		"tcpstat version",
		"tcpstat version --verbose --json    # with the kernel's features",
	},
	"serve": {
		"tcpstat serve                       # /metrics on 127.0.0.1:9977",
		"tcpstat serve --web.listen-address :9977 --metrics.by netns",
		"tcpstat serve 'sport = :443 or dport = :5432'   # only HTTPS and PostgreSQL sockets",
	},
	"filter": {
		"tcpstat filter explain 'dport = :443 and not comm curl'",
		"tcpstat filter explain 'state established and reason reset'",
	},
	"completion": {
		"tcpstat completion bash > /etc/bash_completion.d/tcpstat",
		"tcpstat completion zsh > \"${fpath[1]}/_tcpstat\"",
		"tcpstat completion fish > ~/.config/fish/completions/tcpstat.fish",
	},
}

// teach adds a command's examples to its help, and makes a mistyped flag
// one line that suggests the nearest flag.
func teach(cmd *cli.Command) {
	if ex := examples[cmd.Name]; len(ex) > 0 {
		text := "Examples:\n  " + strings.Join(ex, "\n  ")
		if cmd.SkipFlagParsing {
			// The command parses its own flags and prints UsageText.
			cmd.UsageText += "\n\n" + text
		} else if cmd.Description != "" {
			cmd.Description += "\n\n" + text
		} else {
			cmd.Description = text
		}
	}
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%s: %w%s (see tcpstat %s --help)", cmd.Name, err, didYouMean(err, flagNames(cmd)), cmd.Name)
	}
	if !cmd.SkipFlagParsing {
		return
	}
	action := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if cmd.Name == "list" {
			if cfg, err := netstat.Parse(c.Args().Slice()); err == nil && cfg.Help {
				_, err := fmt.Fprintln(c.App.Writer, cmd.UsageText)
				return err
			}
		}
		err := action(c)
		var exit cli.ExitCoder
		if hint := didYouMean(err, flagNames(cmd)); hint != "" && errors.As(err, &exit) && !strings.Contains(exit.Error(), "did you mean") {
			msg := strings.Replace(exit.Error(), " (see", hint+" (see", 1)
			return cli.Exit(msg, exit.ExitCode())
		}
		return err
	}
}

// flagNames are a command's flags as typed: from its definitions, or from
// the usage text of a command that parses its own.
func flagNames(cmd *cli.Command) []string {
	var names []string
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if len(n) > 1 {
				names = append(names, "--"+n)
			} else {
				names = append(names, "-"+n)
			}
		}
	}
	if cmd.SkipFlagParsing {
		names = append(names, regexp.MustCompile(`--[a-z][a-z0-9-]+`).FindAllString(cmd.UsageText, -1)...)
	}
	return names
}

// didYouMean is "; did you mean --port?" for an error about an unknown
// flag that is close to a known one, else "".
func didYouMean(err error, known []string) string {
	if err == nil {
		return ""
	}
	// Compiled on a mistake only: not at every start.
	unknownFlag := regexp.MustCompile(`(?:flag provided but not defined: |unknown flag )-?(-[a-zA-Z0-9][a-zA-Z0-9.-]*)`)
	m := unknownFlag.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	// The flag package names every unknown flag with one dash.
	typed := "-" + strings.TrimLeft(m[1], "-")
	if len(strings.TrimLeft(m[1], "-")) > 1 {
		typed = "-" + typed
	}
	if near := nearest(typed, known); near != "" {
		return "; did you mean " + near + "?"
	}
	return ""
}

// nearest is the candidate closest to typed in edit distance, if it is
// close enough to be what was meant: a letter's case for one-letter
// flags, two edits for short words (prot, tpo), a third of longer ones.
func nearest(typed string, candidates []string) string {
	word := strings.TrimLeft(typed, "-")
	limit := max(2, len(word)/3)
	if len(word) <= 2 {
		limit = 0
	}
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if c == typed {
			continue
		}
		if d := smetrics.WagnerFischer(strings.ToLower(typed), strings.ToLower(c), 1, 1, 1); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func newApp(stdout, stderr io.Writer) *cli.App {
	// --version prints what `tcpstat version` prints.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version, commit and Go version"}
	cli.VersionPrinter = func(c *cli.Context) {
		if err := writeVersion(c.App.Writer, c.Bool("verbose"), c.Bool("json")); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "tcpstat: %v\n", err)
		}
	}
	cmds := commands()
	return &cli.App{
		Name:     "tcpstat",
		Version:  readBuildInfo().Version,
		Usage:    "every TCP state transition on this host, live, and the connection table they make",
		Commands: cmds,
		Flags:    versionFlags(),
		Action: func(c *cli.Context) error {
			if c.Bool("verbose") || c.Bool("json") {
				return errors.New("--verbose and --json go with --version, or after a command")
			}
			if c.NArg() > 0 {
				typed := c.Args().First()
				var names []string
				for _, cmd := range cmds {
					names = append(names, cmd.Names()...)
				}
				hint := ""
				if near := nearest(typed, names); near != "" {
					hint = "; did you mean " + near + "?"
				}
				return fmt.Errorf("unknown command %q%s (see --help)", typed, hint)
			}
			return cli.ShowAppHelp(c)
		},
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by main; not as help text plus a stack.
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w%s (see --help)", err, didYouMean(err, []string{"--help", "--version"}))
		},
	}
}
