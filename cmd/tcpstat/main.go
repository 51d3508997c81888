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
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
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
	return newApp(stdout, stderr).RunContext(ctx, args)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "tcpstat",
		Usage: "every TCP state transition on this host, live, and the connection table they make",
		Commands: []*cli.Command{
			watchCommand(),
			listCommand(),
			doctorCommand(),
			topCommand(),
			serveCommand(),
			filterCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unknown command %q (see --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by main; not as help text plus a stack.
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w (see --help)", err)
		},
	}
}
