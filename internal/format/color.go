package format

import (
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Tone is what a colour says about a state or a close reason; watch turns
// it into terminal escapes, top into screen styles.
type Tone uint8

const (
	Plain   Tone = iota
	Open         // established: data flows
	Opening      // a handshake in progress
	Listen       // a listener
	Closing      // an orderly teardown
	Bad          // resets, refusals, aborts, errors
	Timeout      // a peer that stopped answering
)

// StateTone is the tone of a TCP state.
func StateTone(s tcp.State) Tone {
	switch s {
	case tcp.Established:
		return Open
	case tcp.SynSent, tcp.SynRecv, tcp.NewSynRecv:
		return Opening
	case tcp.Listen:
		return Listen
	case tcp.FinWait1, tcp.FinWait2, tcp.TimeWait, tcp.CloseWait, tcp.LastAck, tcp.Closing:
		return Closing
	}
	return Plain
}

// ReasonTone is the tone of a close reason: resets and timeouts stand out,
// orderly ends do not.
func ReasonTone(r tracer.Reason) Tone {
	switch r {
	case tracer.ReasonReset, tracer.ReasonRefused, tracer.ReasonAbort, tracer.ReasonError:
		return Bad
	case tracer.ReasonTimeout:
		return Timeout
	case tracer.ReasonTimeWait, tracer.ReasonDone:
		return Closing
	}
	return Plain
}

// sgr is each tone's ANSI select-graphic-rendition sequence.
var sgr = [...]string{
	Plain:   "",
	Open:    "\x1b[32m",   // green
	Opening: "\x1b[33m",   // yellow
	Listen:  "\x1b[36m",   // cyan
	Closing: "\x1b[2m",    // dim
	Bad:     "\x1b[1;31m", // bold red
	Timeout: "\x1b[1;35m", // bold magenta
}

const sgrReset = "\x1b[0m"

// appendToned appends s in tone t's colour when color is set.
func appendToned(b []byte, s string, t Tone, color bool) []byte {
	if !color || sgr[t] == "" {
		return append(b, s...)
	}
	b = append(b, sgr[t]...)
	b = append(b, s...)
	return append(b, sgrReset...)
}
