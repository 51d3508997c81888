package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/doctor"
)

// Set at build time (see the Makefile):
// -ldflags "-X main.version=v1.2.3 -X main.commit=0123abc".
var (
	version string
	commit  string
)

// buildInfo is what `tcpstat version` reports.
type buildInfo struct {
	Version  string           `json:"version"`
	Commit   string           `json:"commit"`
	Modified bool             `json:"modified"` // built from a tree with uncommitted changes
	Go       string           `json:"go"`
	Platform string           `json:"platform"`
	Kernel   string           `json:"kernel,omitempty"`
	Features []doctor.Feature `json:"features,omitempty"`
}

// readBuildInfo takes the version and commit from the link flags, else from
// what the Go toolchain records in every binary: the module's version for
// `go install …@v1.2.3`, the VCS revision for a build in a checkout.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print tcpstat's version, commit and Go version",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "add the kernel and the features doctor finds (loads the tracer once)"},
			&cli.BoolFlag{Name: "json", Usage: "print it as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("version takes no arguments, got %q", c.Args().First())
			}
			return writeVersion(c.App.Writer, c.Bool("verbose"), c.Bool("json"))
		},
	}
}

// versionFlags let `tcpstat --version` take version's --verbose and --json.
func versionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "verbose", Usage: "with --version: add the kernel and the features doctor finds"},
		&cli.BoolFlag{Name: "json", Usage: "with --version: print it as JSON"},
	}
}

// writeVersion prints the build, with the kernel's features if verbose.
func writeVersion(w io.Writer, verbose, asJSON bool) error {
	b := readBuildInfo()
	if verbose {
		r := doctor.Run()
		b.Kernel, b.Features = r.Kernel, r.Features
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	return printVersion(w, b)
}

func printVersion(w io.Writer, b buildInfo) error {
	modified := ""
	if b.Modified {
		modified = " (modified)"
	}
	fmt.Fprintf(w, "tcpstat %s\ncommit  %s%s\ngo      %s %s\n", b.Version, b.Commit, modified, b.Go, b.Platform)
	if b.Kernel != "" {
		fmt.Fprintf(w, "kernel  %s\n", b.Kernel)
	}
	for _, f := range b.Features {
		fmt.Fprintf(w, "  %-12s %s\n", f.Status, f.Name)
	}
	return nil
}
