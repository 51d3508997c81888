package topview

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/golden"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/topview/topviewtest"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

const sec = uint64(time.Second)

var wall = time.Date(2026, 11, 22, 4, 30, 0, 0, time.UTC)

func sockets() []snapshot.Socket {
	ap := netip.MustParseAddrPort
	nginx := []snapshot.Owner{{PID: 200, Comm: "nginx"}}
	return []snapshot.Socket{
		{Proto: snapshot.TCP, State: tcp.Listen, Local: ap("0.0.0.0:8080"), Remote: ap("0.0.0.0:0"), Cookie: 10, Inode: 1, Owners: nginx},
		{Proto: snapshot.TCP, State: tcp.Established, Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:40001"), Cookie: 11, Inode: 2, Owners: nginx},
		{Proto: snapshot.TCP, State: tcp.TimeWait, Local: ap("127.0.0.1:40002"), Remote: ap("127.0.0.1:8080"), Cookie: 12, Timer: snapshot.TimerTimeWait},
		{Proto: snapshot.TCP, State: tcp.Established, Local: ap("[::1]:22"), Remote: ap("[::1]:50000"), Cookie: 13, Inode: 3, Owners: []snapshot.Owner{{PID: 50, Comm: "sshd"}}},
		{Proto: snapshot.TCP, State: tcp.NewSynRecv, Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:40003"), Cookie: 14},
	}
}

// testTable is a table after a dump at 100 s and a few events, viewed at
// 130 s of boot time.
func testTable() (*table.Table, livetable.Status) {
	tb := table.New(table.Options{})
	tb.Reconcile(&table.Dump{Sockets: sockets(), Start: 100 * sec, End: 100 * sec, Owners: true})
	curl := tracer.Process{PID: 300, Comm: "curl", UID: 1000}
	for _, e := range []tracer.Event{
		{Kind: tracer.Transition, Time: 120 * sec, Cookie: 20, Local: netip.MustParseAddrPort("127.0.0.1:0"), Remote: netip.MustParseAddrPort("127.0.0.1:8080"), Old: tcp.Close, New: tcp.SynSent, Owner: curl, OwnerKnown: true},
		{Kind: tracer.Transition, Time: 120*sec + 2000, Cookie: 20, Local: netip.MustParseAddrPort("127.0.0.1:40004"), Remote: netip.MustParseAddrPort("127.0.0.1:8080"), Old: tcp.SynSent, New: tcp.Established, Owner: curl, OwnerKnown: true},
		{Kind: tracer.Transition, Time: 129 * sec, Cookie: 21, Local: netip.MustParseAddrPort("127.0.0.1:40005"), Remote: netip.MustParseAddrPort("127.0.0.1:8080"), Old: tcp.FinWait2, New: tcp.TimeWait, Inferred: true, Owner: curl, OwnerKnown: true},
	} {
		tb.Apply(&e)
	}
	return tb, livetable.Status{Tracing: true, Now: 130 * sec, Events: 3, Lost: 7, Corrupt: 1, Stale: true, Resyncs: 1, Reconciles: 2, OwnersUnreadable: 4}
}

func TestBatchOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		json bool
	}{
		{"top.txt", Options{}, false},
		{"top-state.txt", Options{Sort: ByState}, false},
		{"top-filter.txt", Options{Filter: mustParse(t, "comm nginx")}, false},
		{"top.json", Options{}, true},
	} {
		// A frame bound to the table writes exactly what a copy of it does.
		for _, bound := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bound=%v", tc.name, bound), func(t *testing.T) {
				var f Frame
				if bound {
					f.Bind(testTable())
				} else {
					f.Capture(testTable())
				}
				f.Arrange(tc.opts)
				var b bytes.Buffer
				var err error
				if tc.json {
					err = f.WriteJSON(&b, wall)
				} else {
					err = f.WriteText(&b, wall, 1234, tc.opts)
				}
				if err != nil {
					t.Fatal(err)
				}
				golden.Check(t, tc.name, b.Bytes())
				if bound {
					f.Unbind()
					if f.Len() != 0 {
						t.Errorf("unbound frame shows %d rows", f.Len())
					}
				}
			})
		}
	}
}

func TestSort(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want []uint64
	}{
		{Options{Sort: ByAge}, []uint64{21, 20, 10, 11, 12, 13, 14}},
		{Options{Sort: ByAge, Reverse: true}, []uint64{14, 13, 12, 11, 10, 20, 21}},
		{Options{Sort: ByState}, []uint64{10, 14, 20, 11, 13, 21, 12}},
		{Options{Sort: ByPID}, []uint64{12, 14, 13, 10, 11, 21, 20}},
		{Options{Sort: ByComm}, []uint64{12, 14, 21, 20, 10, 11, 13}},
		{Options{Sort: ByLocal}, []uint64{10, 11, 14, 12, 20, 21, 13}},
		{Options{Sort: ByRemote, Filter: mustParse(t, "sport = :8080 or dport = :8080")}, []uint64{10, 21, 20, 12, 11, 14}},
	} {
		for _, bound := range []bool{false, true} {
			var f Frame
			if bound {
				f.Bind(testTable())
			} else {
				f.Capture(testTable())
			}
			f.Arrange(tc.opts)
			var got []uint64
			for i := range f.Len() {
				got = append(got, f.Row(i).Cookie())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%+v, bound %v: cookies (-want +got):\n%s", tc.opts, bound, diff)
			}
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, k := range []Key{ByAge, ByState, ByPID, ByComm, ByLocal, ByRemote} {
		if got, err := ParseKey(k.String()); err != nil || got != k {
			t.Errorf("ParseKey(%q) = %v, %v", k, got, err)
		}
	}
	if _, err := ParseKey("cpu"); err == nil {
		t.Error("ParseKey(cpu) succeeded")
	}
}

// TestInteractive drives the screen with keys on tcell's simulated
// terminal: a filter with a mistake (shown in the status line), the
// corrected filter for sshd, then quit.
func TestInteractive(t *testing.T) {
	dump := func(context.Context, bool) ([]snapshot.Socket, error) { return sockets(), nil }
	tr, err := livetable.Start(context.Background(), livetable.Config{Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	screen := topviewtest.NewScreen(t, 150, 12)
	defer screen.Fini()
	done := make(chan error)
	go func() { done <- Interactive(context.Background(), screen, tr, Options{}, time.Hour) }()
	// A mistake first: the status line shows it and the editor stays open.
	for _, r := range "s/comm = sshd )" {
		screen.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
	screen.InjectKey(tcell.KeyEnter, 0, tcell.ModNone)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(screen.Text(), `filter: unmatched ")" at column 13`) {
		if time.Now().After(deadline) {
			t.Fatalf("no error in the status line:\n%s", screen.Text())
		}
		time.Sleep(10 * time.Millisecond)
	}
	screen.InjectKey(tcell.KeyBackspace, 0, tcell.ModNone)
	screen.InjectKey(tcell.KeyBackspace, 0, tcell.ModNone)
	screen.InjectKey(tcell.KeyEnter, 0, tcell.ModNone)
	screen.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	text := screen.Text()
	for _, want := range []string{"(1 shown)", `filter "comm sshd"`, "sort state", "sshd", "[::1]:22"} {
		if !strings.Contains(text, want) {
			t.Errorf("screen lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "nginx") {
		t.Errorf("filtered screen shows nginx:\n%s", text)
	}
}

func mustParse(t testing.TB, expr string) *filter.Filter {
	t.Helper()
	f, err := filter.Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestOwnerNames: a frame shows the names its rows' owners had when it was
// captured, though the table has since given the name's id to another,
// and shows them sanitised like watch's.
func TestOwnerNames(t *testing.T) {
	tb := table.New(table.Options{})
	open := func(cookie uint64, at uint64, comm string) {
		tb.Apply(&tracer.Event{Kind: tracer.Transition, Time: at, Cookie: cookie, NetNS: 1,
			Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:8080"),
			Old: tcp.Close, New: tcp.SynSent, Owner: tracer.Process{PID: 77, Comm: comm}, OwnerKnown: true})
	}
	open(1, 1*sec, "alpha-only-name")
	var f Frame
	f.Capture(tb, livetable.Status{Now: 2 * sec})
	// The row closes and its name's id is freed; a new name takes the id.
	tb.Apply(&tracer.Event{Kind: tracer.Transition, Time: 3 * sec, Cookie: 1, NetNS: 1, Old: tcp.SynSent, New: tcp.Close})
	open(2, 4*sec, "beta\x1b[2J\n")
	f.Arrange(Options{})
	if _, lines := f.Lines(0, 1); len(lines) != 1 || !strings.Contains(lines[0], " alpha-only-name ") {
		t.Errorf("frame captured with alpha's row shows %q", lines)
	}
	f.Capture(tb, livetable.Status{Now: 5 * sec})
	f.Arrange(Options{})
	if _, lines := f.Lines(0, 1); len(lines) != 1 || !strings.Contains(lines[0], " beta?[2J? ") {
		t.Errorf("a name with control characters shows as %q, want them replaced by '?'", lines)
	}
}

// TestNetNSColumn: NETNS appears when the rows span namespaces, not before.
func TestNetNSColumn(t *testing.T) {
	tb, st := testTable()
	var f Frame
	f.Capture(tb, st)
	f.Arrange(Options{})
	if head, _ := f.Lines(0, 1); strings.Contains(head, "NETNS") {
		t.Errorf("one namespace, yet %q", head)
	}
	tb.Apply(&tracer.Event{Kind: tracer.Transition, Time: 129 * sec, Cookie: 30, NetNS: 4026532999,
		Local: netip.MustParseAddrPort("127.0.0.1:8080"), Old: tcp.Close, New: tcp.Listen})
	f.Capture(tb, st)
	f.Arrange(Options{Sort: ByAge})
	head, lines := f.Lines(0, f.Len())
	if !strings.HasPrefix(strings.Join(strings.Fields(head), " "), "PID COMM NETNS LOCAL REMOTE STATE TIME COOKIE") {
		t.Errorf("header %q", head)
	}
	found := false
	for _, l := range lines {
		if fs := strings.Fields(l); len(fs) == 8 && fs[2] == "4026532999" && fs[3] == "127.0.0.1:8080" && fs[5] == "LISTEN" {
			found = true
		}
	}
	if !found {
		t.Errorf("no row in namespace 4026532999:\n%s", strings.Join(lines, "\n"))
	}
}

// TestInteractiveColor: with Color, the state column takes the state's
// colour (ESTABLISHED green, LISTEN teal); without, it stays plain.
func TestInteractiveColor(t *testing.T) {
	for _, color := range []bool{true, false} {
		dump := func(context.Context, bool) ([]snapshot.Socket, error) { return sockets(), nil }
		tr, err := livetable.Start(context.Background(), livetable.Config{Dump: dump, NetNS: 1, Every: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		screen := topviewtest.NewScreen(t, 150, 12)
		done := make(chan error)
		go func() {
			done <- Interactive(context.Background(), screen, tr, Options{Sort: ByState, Color: color}, time.Hour)
		}()
		screen.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		cells, width, height := screen.GetContents()
		found := map[string]tcell.Color{}
		for y := range height {
			var b strings.Builder
			for x := range width {
				if r := cells[y*width+x].Runes; len(r) > 0 {
					b.WriteRune(r[0])
				} else {
					b.WriteRune(' ')
				}
			}
			line := b.String()
			for _, state := range []string{"ESTABLISHED", "LISTEN"} {
				if x := strings.Index(line, " "+state); x >= 0 && !strings.Contains(line, "STATE") && !strings.HasPrefix(line, "tcpstat") {
					fg, _, _ := cells[y*width+x+1].Style.Decompose()
					found[state] = fg
				}
			}
		}
		tr.Close()
		screen.Fini()
		want := map[string]tcell.Color{"ESTABLISHED": tcell.ColorGreen, "LISTEN": tcell.ColorTeal}
		if !color {
			want = map[string]tcell.Color{"ESTABLISHED": tcell.ColorDefault, "LISTEN": tcell.ColorDefault}
		}
		if diff := cmp.Diff(want, found); diff != "" {
			t.Errorf("color %v: state colours (-want +got):\n%s", color, diff)
		}
	}
}
