package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/metrics"
	"github.com/tcpstat/tcpstat/internal/netnstest"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// TestScrape drives connections inside a namespace of the test's own (so
// that no other traffic on the host counts), scrapes a real /metrics,
// checks it with promtool and compares the state gauge with ss in that
// namespace and with the table, and the counters with what the test did.
func TestScrape(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (tracer, network namespaces)")
	}
	testenv.SkipInMinimalGuest(t, "there is no promtool")
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run scripts/deps.sh (Debian package prometheus)")
	}
	ns := netnstest.New(t)
	mine := func(ino uint32) bool { return ino == ns.Inode }

	events, err := tracer.New(tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	obs := metrics.NewObserver(metrics.ObserverOptions{MaxPorts: 2, NetNS: mine})
	ctx := context.Background()
	tr, err := livetable.Start(ctx, livetable.Config{
		Events: events, OnEvent: obs.Event, Dump: snapshot.DumpTCP, Walk: snapshot.WalkTCP, OnEnd: obs.End,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	col := metrics.NewCollector(metrics.Options{Table: tr, Observer: obs, Stats: events.Stats, NetNS: mine, By: metrics.ByNetNS})
	srv := httptest.NewServer(metrics.Handler(metrics.Registry(col), func() error { return nil }))
	defer srv.Close()

	// In the namespace: a listener; 5 connections accepted; the clients
	// close 2 of them (client FIN_WAIT2, server CLOSE_WAIT) and 1 fully
	// (client TIME_WAIT); 3 connects refused on two ports and one on a
	// third, counted as "other" past the cap of 2 ports.
	const established, halfClosed, fullyClosed = 5, 2, 1
	var ln net.Listener
	var clients, servers []net.Conn
	err = ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:7100"); err != nil {
			return err
		}
		for range established {
			c, err := net.Dial("tcp", "127.0.0.1:7100")
			if err != nil {
				return err
			}
			clients = append(clients, c)
		}
		for _, port := range []int{7101, 7101, 7102, 7103} {
			if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				return fmt.Errorf("connect to closed port %d succeeded", port)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for range established {
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
		defer s.Close()
	}
	for _, c := range clients[:halfClosed+fullyClosed] {
		c.Close()
	}
	// The server side of one of them closes too: its client goes to TIME_WAIT.
	closeServerOf(t, servers, clients[halfClosed])
	for _, c := range clients[halfClosed+fullyClosed:] {
		defer c.Close()
	}
	want := map[string]int{"LISTEN": 1, "ESTABLISHED": 2 * (established - halfClosed - fullyClosed),
		"FIN_WAIT2": halfClosed, "CLOSE_WAIT": halfClosed, "TIME_WAIT": fullyClosed}
	waitSS(t, ns, want)
	if err := tr.Barrier(ctx); err != nil {
		t.Fatal(err)
	}

	body := get(t, srv.URL+"/metrics")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}

	// The gauge, the table and ss agree for the namespace.
	gauge := map[string]int{}
	label := strconv.FormatUint(uint64(ns.Inode), 10)
	for _, m := range families["tcpstat_connections"].GetMetric() {
		if labelOf(m, "netns") == label && m.GetGauge().GetValue() != 0 {
			gauge[labelOf(m, "state")] = int(m.GetGauge().GetValue())
		}
	}
	if diff := cmp.Diff(want, gauge); diff != "" {
		t.Errorf("tcpstat_connections for the test's namespace (-ss +metrics)\n%s", diff)
	}
	inTable := map[string]int{}
	tr.View(func(tb *table.Table, _ livetable.Status) {
		for i := range tb.Len() {
			if r := tb.Row(i); r.NetNS() == ns.Inode {
				inTable[r.State().String()]++
			}
		}
	})
	if diff := cmp.Diff(inTable, gauge); diff != "" {
		t.Errorf("tcpstat_connections against the table (-table +metrics)\n%s", diff)
	}

	// Counters: exactly what the test made happen in its namespace.
	counters := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf(",%s=%s", l.GetName(), l.GetValue())
			}
			switch {
			case m.Counter != nil:
				counters[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				counters[key+",count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"tcpstat_transitions_total,from=CLOSE,to=LISTEN":           1,
		"tcpstat_transitions_total,from=SYN_SENT,to=ESTABLISHED":   established,
		"tcpstat_transitions_total,from=SYN_RECV,to=ESTABLISHED":   established,
		"tcpstat_transitions_total,from=ESTABLISHED,to=FIN_WAIT1":  halfClosed + fullyClosed,
		"tcpstat_transitions_total,from=ESTABLISHED,to=CLOSE_WAIT": halfClosed + fullyClosed,
		// A closed socket in FIN_WAIT2 goes to a timewait mini-socket (in
		// FIN_WAIT2 until the peer's FIN): the half-closed ones too.
		"tcpstat_transitions_total,from=FIN_WAIT2,to=TIME_WAIT":    halfClosed + fullyClosed,
		"tcpstat_transitions_total,from=SYN_SENT,to=CLOSE":         4,
		"tcpstat_accepts_total":                                    established,
		"tcpstat_connection_closes_total,reason=refused":           4,
		"tcpstat_connection_closes_total,reason=timewait":          halfClosed + fullyClosed,
		"tcpstat_connection_closes_total,reason=done":              fullyClosed,
		"tcpstat_connect_failures_total,port=7101,reason=refused":  2,
		"tcpstat_connect_failures_total,port=7102,reason=refused":  1,
		"tcpstat_connect_failures_total,port=other,reason=refused": 1,
		"tcpstat_handshake_duration_seconds,side=active,count":     established,
		"tcpstat_handshake_duration_seconds,side=passive,count":    established,
		"tcpstat_accept_queue_wait_seconds,count":                  established,
		"tcpstat_state_duration_seconds,state=SYN_SENT,count":      established + 4,
		"tcpstat_state_duration_seconds,state=CLOSE_WAIT,count":    fullyClosed,
		"tcpstat_state_duration_seconds,state=FIN_WAIT2,count":     halfClosed + fullyClosed,
		"tcpstat_connection_lifetime_seconds,count":                halfClosed + 2*fullyClosed, // clients handed off, the server closed
		"tcpstat_transitions_total,from=CLOSE_WAIT,to=LAST_ACK":    fullyClosed,
		"tcpstat_transitions_total,from=LAST_ACK,to=CLOSE":         fullyClosed,
		"tcpstat_transitions_total,from=FIN_WAIT1,to=FIN_WAIT2":    halfClosed + fullyClosed,
		"tcpstat_transitions_total,from=CLOSE,to=SYN_SENT":         established + 4,
		"tcpstat_transitions_total,from=LISTEN,to=SYN_RECV":        established,
		"tcpstat_connection_closes_total,reason=reset":             0,
	} {
		if got, ok := counters[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if counters["tcpstat_tracer_events_total"] == 0 {
		t.Error("tcpstat_tracer_events_total is 0")
	}
	if got := string(get(t, srv.URL+"/healthz")); got != "ok\n" {
		t.Errorf("/healthz: %q", got)
	}
}

// closeServerOf closes the accepted side of client c, which closed first,
// once the client's FIN has arrived (closing c again does nothing).
func closeServerOf(t *testing.T, servers []net.Conn, c net.Conn) {
	t.Helper()
	for _, s := range servers {
		if s.RemoteAddr().String() == c.LocalAddr().String() {
			testenv.CloseClientFirst(t, c, s)
			return
		}
	}
	t.Fatalf("no accepted connection for %s", c.LocalAddr())
}

// waitSS waits until ss in the namespace counts want (states as ss names
// them, in the kernel's spelling), for at most 5 s.
func waitSS(t *testing.T, ns *netnstest.NS, want map[string]int) {
	t.Helper()
	var got map[string]int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-tanH").Output()
		if err != nil {
			t.Fatalf("ss in %s: %v", ns.Name, err)
		}
		got = map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				got[ssState(f[0])]++
			}
		}
		if cmp.Equal(want, got) {
			return
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 20e6}, nil)
	}
	t.Fatalf("ss in %s: %v, want %v", ns.Name, got, want)
}

// ssState turns ss's state names (ESTAB, FIN-WAIT-2) into the kernel's.
func ssState(s string) string {
	names := map[string]string{"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
		"FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT", "CLOSE-WAIT": "CLOSE_WAIT",
		"LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING"}
	if n, ok := names[s]; ok {
		return n
	}
	return s
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
