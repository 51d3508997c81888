//go:build !noserve

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/bcrypt"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/metrics"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func TestServeBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--metrics.by", "pid"}, `--metrics.by "pid": want netns or pod`},
		{[]string{"serve", "--metrics.max-series", "0"}, "--metrics.max-series must be at least 1"},
		{[]string{"serve", "--table.dump-cpu", "150"}, "--table.dump-cpu 150: want a percentage, 0 to 100"},
		{[]string{"serve", "--table.dump-cpu", "-1"}, "--table.dump-cpu -1: want a percentage"},
		{[]string{"serve", "--table.dump-cpu", "NaN"}, "--table.dump-cpu NaN: want a percentage"},
		{[]string{"serve", "--web.config.file", "/nonexistent/web.yml"}, "--web.config.file /nonexistent/web.yml"},
		{[]string{"serve", "state", "establised"}, `unknown state "establised"`},
		{[]string{"serve", "--web.listen-address", "127.0.0.1:99999"}, "listen:"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"tcpstat"}, tc.args...), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestServeWebConfig serves through exporter-toolkit with TLS and basic
// auth from a web configuration file, as Prometheus' exporters do.
func TestServeWebConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "web.yml")
	os.WriteFile(config, []byte("tls_server_config:\n  cert_file: "+cert+"\n  key_file: "+key+
		"\nbasic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics") })
	go func() { done <- serveHTTP(ctx, ln, h, config, io.Discard) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := "https://" + ln.Addr().String() + "/metrics"
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"prometheus", "wrong", 401}, {"prometheus", "s3cret", 200}} {
		req, _ := http.NewRequest("GET", url, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("user %q: status %d, want %d", tc.user, resp.StatusCode, tc.want)
		}
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served metrics with TLS configured")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve ended with %v", err)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tcpstat-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

// TestServeFilter: serve FILTER counts only the sockets the filter
// selects, in the connections gauge (rows, some older than serve) and in
// what events add up (transitions, accepts).
func TestServeFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	kept, port := listen(t, "127.80.212.1")
	other, _ := listen(t, "127.80.212.2")
	dialOn(t, kept) // older than serve: its two ends count from the first dump
	dialOn(t, other)
	// The comm term keeps the kernel from filtering (filter explain):
	// user space selects every event.
	s := startServe(t, "127.80.212.9:9982", fmt.Sprintf("src 127.80.212.1:%s or dst 127.80.212.1:%s or comm no-such-program", port, port))
	const (
		established = `tcpstat_connections{state="ESTABLISHED"}`
		listening   = `tcpstat_connections{state="LISTEN"}`
		handshakes  = `tcpstat_transitions_total{from="SYN_SENT",to="ESTABLISHED"}`
		accepts     = `tcpstat_accepts_total`
	)
	s.wait(map[string]string{established: "2", listening: "1"})
	// The other listener's connection first: its events are read before
	// the kept one's, so a count that took them would show.
	dialOn(t, other)
	dialOn(t, kept)
	s.wait(map[string]string{established: "4", listening: "1", handshakes: "1", accepts: "1"})
	s.stop()
}

// TestServeFilterReconcileCounts: under a filter the kernel applies, the
// table still lists every socket and the dumps set the rows of those the
// kernel sends no events for; tcpstat_table_reconciled_rows_total counts
// only the rows the filter selects, so those corrections do not show as
// drift.
func TestServeFilterReconcileCounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	_, port := listen(t, "127.80.213.1")
	other, _ := listen(t, "127.80.213.2")
	// Dumps every 2 s whatever they cost: a dump of every namespace under
	// emulation takes long enough for the default budget to space them
	// past the test's wait.
	s := startServe(t, "127.80.213.9:9983", "--table.dump-cpu", "0", fmt.Sprintf("src 127.80.213.1:%s or dst 127.80.213.1:%s", port, port))
	const reconciles = `tcpstat_table_reconciles_total`
	s.wait(map[string]string{`tcpstat_connections{state="LISTEN"}`: "1"})
	waitReconciles := func(n int) {
		t.Helper()
		from := s.counter(reconciles)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			now := s.counter(reconciles)
			if now >= from+n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d reconciles in 30 s, want %d", now-from, n)
			}
		}
	}
	// Sockets the filter leaves out, born and gone between dumps: the
	// kernel sends no events for them, so the dumps add them, then find
	// them gone.
	var conns []net.Conn
	for range 10 {
		conns = append(conns, dialOn(t, other)...)
	}
	waitReconciles(2)
	for _, c := range conns {
		c.Close()
	}
	waitReconciles(3)
	got := s.series()
	for _, o := range []string{"added", "corrected", "expired", "vanished"} {
		// Counters: a row counted once stays counted.
		if name := fmt.Sprintf(`tcpstat_table_reconciled_rows_total{outcome=%q}`, o); got[name] != "0" {
			t.Errorf("%s is %q, want 0: the filter selects no socket the dumps changed", name, got[name])
		}
	}
	// No timewait timer (60 s) ran out in the test: there, but 0.
	if name := "tcpstat_table_rows_expired_between_dumps_total"; got[name] != "0" {
		t.Errorf("%s is %q, want 0", name, got[name])
	}
	s.stop()
}

// dialOn connects to ln: the two ends, closed when the test ends.
func dialOn(t *testing.T, ln net.Listener) []net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return []net.Conn{c, s}
}

// servedMetrics is serve running in the test, at addr.
type servedMetrics struct {
	t           *testing.T
	addr        string
	cancel      func()
	done        chan error
	out, errOut syncBuffer
}

func startServe(t *testing.T, addr string, args ...string) *servedMetrics {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &servedMetrics{t: t, addr: addr, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- run(ctx, append([]string{"tcpstat", "serve", "--web.listen-address", addr}, args...), &s.out, &s.errOut)
	}()
	return s
}

// series are the samples serve exposes, by name and labels; nil while it
// does not answer.
func (s *servedMetrics) series() map[string]string {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + s.addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && !strings.HasPrefix(l, "#") {
			m[k] = v
		}
	}
	return m
}

// wait waits until the series in want have their values.
func (s *servedMetrics) wait(want map[string]string) {
	s.t.Helper()
	var got map[string]string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s.running()
		got = s.series()
		differ := []string{}
		for k, v := range want {
			if got[k] != v {
				differ = append(differ, fmt.Sprintf("%s is %q, want %s", k, got[k], v))
			}
		}
		if got != nil && len(differ) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s (stderr %q)", strings.Join(differ, "; "), s.errOut.String())
		}
	}
}

// counter is the value of the series name, waiting up to 10 s for serve to
// answer with it: a serve that ended or does not answer fails the test
// rather than reading as 0.
func (s *servedMetrics) counter(name string) int {
	s.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s.running()
		if v, ok := s.series()[name]; ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s in 10 s (stderr %q)", name, s.errOut.String())
		}
	}
}

// running fails the test if serve has ended.
func (s *servedMetrics) running() {
	s.t.Helper()
	select {
	case err := <-s.done:
		s.t.Fatalf("serve ended: %v (stderr %q)", err, s.errOut.String())
	default:
	}
}

func (s *servedMetrics) stop() {
	s.t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Fatalf("serve: %v", err)
	}
}

// viewOf is a table the collector reads without a live table around it.
type viewOf struct{ tb *table.Table }

func (v viewOf) View(fn func(*table.Table, livetable.Status)) { fn(v.tb, livetable.Status{}) }

// nginxSelection is serve's selection of `comm nginx`, the observer it
// feeds and a table of its own, for one connection to 127.0.0.1:80.
type nginxSelection struct {
	sel           *serveSelection
	obs           *metrics.Observer
	tb            *table.Table
	local, remote netip.AddrPort
}

func newNginxSelection(t *testing.T) *nginxSelection {
	keep, err := parseFilter([]string{"comm nginx"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obs := metrics.NewObserver(metrics.ObserverOptions{})
	sel := newServeSelection(keep, obs, io.Discard)
	return &nginxSelection{sel: sel, obs: obs, tb: table.New(table.Options{OnEnd: sel.end}),
		local: netip.MustParseAddrPort("127.0.0.1:80"), remote: netip.MustParseAddrPort("127.0.0.1:40000")}
}

// step returns a function that gives the selection, then the table, one
// event of the connection (at ms) under cookie.
func (f *nginxSelection) step(cookie uint64, synthetic bool) func(at uint64, kind tracer.Kind, old, new tcp.State, owner *tracer.Process) {
	return func(at uint64, kind tracer.Kind, old, new tcp.State, owner *tracer.Process) {
		ev := tracer.Event{Kind: kind, Time: at * uint64(time.Millisecond), Cookie: cookie, Synthetic: synthetic, NetNS: 1,
			Local: f.local, Remote: f.remote, Old: old, New: new}
		if owner != nil {
			ev.Owner, ev.OwnerKnown = *owner, true
		}
		f.sel.event(&ev)
		f.tb.Apply(&ev)
	}
}

// TestServeSelectionJudgesEndsByEvents: a connection nginx accepts and
// hands to a worker, which closes it, passes `comm nginx` with all of its
// events (the gate's identity is decided at the accept), and its lifetime
// counts too, although the row's owner at its end is the worker.
func TestServeSelectionJudgesEndsByEvents(t *testing.T) {
	f := newNginxSelection(t)
	sel, obs, tb, step := f.sel, f.obs, f.tb, f.step(7, false)
	nginx, worker := tracer.Process{PID: 20, Comm: "nginx"}, tracer.Process{PID: 30, Comm: "worker"}
	step(1, tracer.Transition, tcp.Listen, tcp.SynRecv, nil)
	step(2, tracer.Transition, tcp.SynRecv, tcp.Established, nil)
	step(3, tracer.Accept, tcp.Established, tcp.Established, &nginx)
	step(40, tracer.Transition, tcp.Established, tcp.CloseWait, &worker)
	step(50, tracer.Transition, tcp.CloseWait, tcp.LastAck, &worker)
	step(60, tracer.Transition, tcp.LastAck, tcp.Close, &worker)
	reg := metrics.Registry(metrics.NewCollector(metrics.Options{Table: viewOf{tb}, Observer: obs, Match: sel.rows}))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case f.GetName() == "tcpstat_connection_lifetime_seconds":
				got["lifetimes"] = m.GetHistogram().GetSampleCount()
			case f.GetName() == "tcpstat_accepts_total":
				got["accepts"] = uint64(m.GetCounter().GetValue())
			case f.GetName() == "tcpstat_transitions_total":
				got["transitions"] += uint64(m.GetCounter().GetValue())
			}
		}
	}
	if diff := cmp.Diff(map[string]uint64{"lifetimes": 1, "accepts": 1, "transitions": 5}, got); diff != "" {
		t.Errorf("metrics of the connection (-want +got):\n%s", diff)
	}
}

// TestServeSelectionSyntheticIDs: before Linux 5.12 a passive open's
// events carry a synthetic id, and `comm nginx` holds them until accept()
// names the owner; a dump meanwhile moves the row to the real cookie, and
// its owner scan may name nginx first. The connections gauge counts the
// row with its events, not before, as on any kernel.
func TestServeSelectionSyntheticIDs(t *testing.T) {
	const id, cookie = 1<<63 | 9, 77
	f := newNginxSelection(t)
	sel, obs, tb, step, local, remote := f.sel, f.obs, f.tb, f.step(id, true), f.local, f.remote
	nginx := tracer.Process{PID: 20, Comm: "nginx"}
	established := func() (n float64) {
		families, err := metrics.Registry(metrics.NewCollector(metrics.Options{Table: viewOf{tb}, Observer: obs, Match: sel.rows})).Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				if f.GetName() == "tcpstat_connections" && slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetValue() == "ESTABLISHED" }) {
					n += m.GetGauge().GetValue()
				}
			}
		}
		return n
	}
	step(1, tracer.Transition, tcp.Listen, tcp.SynRecv, nil)
	step(2, tracer.Transition, tcp.SynRecv, tcp.Established, nil)
	tb.Reconcile(&table.Dump{Start: 3 * uint64(time.Millisecond), End: 4 * uint64(time.Millisecond), NetNS: 1, Owners: true,
		Sockets: []snapshot.Socket{{Proto: snapshot.TCP, State: tcp.Established, Cookie: cookie, Local: local, Remote: remote, Inode: 5,
			Owners: []snapshot.Owner{{PID: nginx.PID, Comm: nginx.Comm}}}}})
	if r := tb.Lookup(cookie); r == nil || tb.Len() != 1 {
		t.Fatalf("the dump did not move the row to cookie %d: %d rows", cookie, tb.Len())
	}
	if n := established(); n != 0 {
		t.Errorf("%v connections counted while the socket's events are held, want 0", n)
	}
	step(5, tracer.Accept, tcp.Established, tcp.Established, &nginx)
	if n := established(); n != 1 {
		t.Errorf("%v connections counted after the accept, want 1", n)
	}
}
