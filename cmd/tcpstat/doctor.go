package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/doctor"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "report what this kernel offers and which tcpstat features work here",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("doctor takes no arguments, got %q", c.Args().First())
			}
			r := doctor.Run()
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return printDoctor(c.App.Writer, r)
		},
	}
}

func printDoctor(w io.Writer, r doctor.Report) error {
	fmt.Fprintf(w, "kernel %s\n\nchecks:\n", r.Kernel)
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "MISS"
		}
		fmt.Fprintf(w, "  %s  %-52s %s\n", mark, c.Name, c.Detail)
		fmt.Fprintf(w, "        for %s\n", c.For)
	}
	fmt.Fprintf(w, "\nfeatures:\n")
	for _, f := range r.Features {
		fmt.Fprintf(w, "  %-12s %s", f.Status, f.Name)
		if f.Detail != "" {
			fmt.Fprintf(w, ": %s", f.Detail)
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintln(w)
	return err
}
