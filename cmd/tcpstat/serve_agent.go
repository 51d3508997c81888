//go:build noserve

package main

import "github.com/urfave/cli/v2"

// runServe hands serve to tcpstat-agent: this build leaves the metrics
// server out (see agentName). The agent parses the arguments again, and
// checks them.
func runServe(c *cli.Context) error { return execAgent(c.App.Metadata[argsKey].([]string)) }
