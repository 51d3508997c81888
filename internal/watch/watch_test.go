package watch

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// syncBuffer is a bytes.Buffer safe to read while watch writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
}

// readyTimeout bounds watch's start-up: loading and verifying the program
// takes seconds in the kernel matrix's emulated guests, more while the
// host is busy (10 s was once too short on 5.10).
const readyTimeout = time.Minute

// start runs watch in the background and waits until it is attached.
func start(t *testing.T, opts Options) (ready string, done <-chan error, cancel func()) {
	t.Helper()
	opts.ReadyFile = filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- Run(ctx, opts) }()
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(opts.ReadyFile); err == nil {
			break
		}
		select {
		case err := <-ch:
			cancel()
			t.Fatalf("watch ended before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("watch not ready after %v", readyTimeout)
		}
	}
	return opts.ReadyFile, ch, cancel
}

// summaryLine is the exact stderr of a run that lost nothing: the
// tracer's warnings (synthetic cookies before 5.12), then the summary.
var summaryLine = regexp.MustCompile(`^(tcpstat: warning: [^\n]+\n)*tcpstat: (output closed; )?\d+ events, 0 lost \(ring buffer full 0, recursion 0, corrupt 0\); \d+ nested transitions recovered by the second program\n$`)

// TestEndsWhenPipeCloses: the reader of a real pipe reads the header and
// closes; no event follows (the port is unused), and watch must end anyway,
// cleanly, with the summary on stderr.
func TestEndsWhenPipeCloses(t *testing.T) {
	needRoot(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr syncBuffer
	_, done, cancel := start(t, Options{Tracer: tracer.Options{Port: 29171}, Stdout: w, Stderr: &stderr})
	defer cancel()
	header, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if header != format.Header {
		t.Errorf("first line %q, want the header %q", header, format.Header)
	}
	closed := time.Now()
	r.Close()
	select {
	case err := <-done:
		t.Logf("watch ended %v after the pipe closed", time.Since(closed).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still runs 10 s after its output pipe closed")
	}
	w.Close()
	if got := stderr.String(); !summaryLine.MatchString(got) || !strings.Contains(got, "output closed; 0 events") {
		t.Errorf("stderr %q, want the summary of 0 events after the output closed", got)
	}
}

// TestMatch: events Match rejects are read and counted, never printed.
func TestMatch(t *testing.T) {
	needRoot(t)
	const keep, drop = 29172, 29173
	var stdout, stderr syncBuffer
	_, done, cancel := start(t, Options{
		JSON:   true,
		Match:  func(ev *tracer.Event) bool { return ev.Local.Port() == keep || ev.Remote.Port() == keep },
		Stdout: &stdout, Stderr: &stderr,
	})
	defer cancel()
	for _, port := range []int{drop, keep} {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	want := `"saddr":"127.0.0.1","sport":29172,"daddr":"0.0.0.0","dport":0,"old_state":"LISTEN","new_state":"CLOSE"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stdout.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the kept listener's CLOSE never printed:\n%s", stdout.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	var ours []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if strings.Contains(line, `port":29172,`) || strings.Contains(line, `port":29173,`) {
			ours = append(ours, line[strings.Index(line, `"saddr"`):strings.Index(line, `,"inferred"`)])
		}
	}
	wantLines := []string{
		`"saddr":"127.0.0.1","sport":29172,"daddr":"0.0.0.0","dport":0,"old_state":"CLOSE","new_state":"LISTEN"`,
		want,
	}
	if strings.Join(ours, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("events of ports %d and %d:\n%s\nwant:\n%s", keep, drop, strings.Join(ours, "\n"), strings.Join(wantLines, "\n"))
	}
	if !summaryLine.MatchString(stderr.String()) {
		t.Errorf("stderr %q, want one summary line without loss", stderr.String())
	}
}
