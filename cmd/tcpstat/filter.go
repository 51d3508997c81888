package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/filter"
)

// filterCommand is `tcpstat filter explain EXPR`: the parsed expression and
// which part the kernel checks.
func filterCommand() *cli.Command {
	return &cli.Command{
		Name:  "filter",
		Usage: "check a filter expression (see docs/filter.md)",
		Subcommands: []*cli.Command{{
			Name:      "explain",
			Usage:     "print the parsed expression and which part runs in the kernel",
			ArgsUsage: "EXPR",
			Action: func(cctx *cli.Context) error {
				if cctx.NArg() == 0 {
					return cli.Exit("filter explain: needs an expression, e.g. tcpstat filter explain 'dport = :443'", 2)
				}
				f, err := parseFilter(cctx.Args().Slice())
				if err != nil {
					return err
				}
				fmt.Fprint(cctx.App.Writer, f.Explain(""))
				return nil
			},
		}},
	}
}

// parseFilter parses a filter given as command-line words; a mistake in it
// exits with status 2.
func parseFilter(args []string) (*filter.Filter, error) {
	f, err := filter.ParseArgs(args)
	if err != nil {
		var fe *filter.Error
		if errors.As(err, &fe) {
			return nil, cli.Exit(err.Error(), 2)
		}
		return nil, err
	}
	return f, nil
}
