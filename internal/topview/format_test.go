package topview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// referenceConn is the struct encoding/json wrote each row from before
// appendRowJSON: the reference for its fields, order and values.
type referenceConn struct {
	Cookie      uint64    `json:"cookie"`
	NetNS       uint32    `json:"netns"`
	State       string    `json:"state"`
	Inferred    bool      `json:"inferred"`
	TimeWait    bool      `json:"timewait"`
	Saddr       string    `json:"saddr"`
	Sport       uint16    `json:"sport"`
	Daddr       string    `json:"daddr"`
	Dport       uint16    `json:"dport"`
	PID         *uint32   `json:"pid"`          // null when the owner is unknown
	Comm        *string   `json:"comm"`         // null when the owner is unknown
	OwnerFormer bool      `json:"owner_former"` // pid and comm no longer hold the socket
	OwnerSource *string   `json:"owner_source"` // syscall, accept, snapshot; null when unknown
	Since       time.Time `json:"since"`
	SinceKnown  bool      `json:"since_known"` // false: the state began at or before since
	// The owner's container and pod, as in watch --json; absent for a host
	// process or without them.
	Container    string `json:"container,omitempty"`
	Pod          string `json:"pod,omitempty"` // the name, or the UID where /var/log/pods is not mounted
	PodUID       string `json:"pod_uid,omitempty"`
	PodNamespace string `json:"pod_namespace,omitempty"`
}

func referenceRow(r *table.Row, o Owner, id container.Identity, now uint64, wall time.Time) referenceConn {
	_, known := r.Since()
	c := referenceConn{
		Cookie: r.Cookie(), NetNS: r.NetNS(), State: displayState(r.State()).String(), Inferred: r.Inferred(), TimeWait: r.TimeWait(),
		Saddr: r.Local().Addr().String(), Sport: r.Local().Port(),
		Daddr: r.Remote().Addr().String(), Dport: r.Remote().Port(),
		Since: wall.Add(-time.Duration(age(r, now))).UTC(), SinceKnown: known,
		Container: id.Container, Pod: id.PodName, PodUID: id.PodUID, PodNamespace: id.PodNamespace,
	}
	if o.Known {
		src := o.Source.String()
		c.PID, c.Comm, c.OwnerFormer, c.OwnerSource = &o.PID, &o.Comm, o.Former, &src
	}
	if c.Pod == "" {
		c.Pod = id.PodUID
	}
	return c
}

// checkRowJSON holds appendRowJSON to encoding/json's encoding of the
// reference: the same bytes where encoding/json does not escape more than
// it must, the same values always.
func checkRowJSON(t *testing.T, r *table.Row, o Owner, id container.Identity, now uint64, at time.Time) {
	t.Helper()
	got := appendRowJSON(nil, r, o, id, now, at)
	want, err := json.Marshal(referenceRow(r, o, id, now, at))
	if err != nil {
		return // a year past what RFC 3339 can say: encoding/json refuses it
	}
	if bytes.Equal(got, want) {
		return
	}
	if !json.Valid(got) {
		t.Fatalf("invalid JSON: %s", got)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("appendRowJSON:\n%s\nencoding/json:\n%s", got, want)
	}
}

func TestRowJSONMatchesEncodingJSON(t *testing.T) {
	tb, st := testTable()
	ids := []container.Identity{{}, {Container: "0123456789ab"}, {PodUID: "u-1"}, {PodName: "web-0", PodUID: "u-2", PodNamespace: "shop", Container: "cafe"}}
	for i := range tb.Len() {
		r := tb.Row(i)
		for _, id := range ids {
			for _, at := range []time.Time{wall, wall.Add(123456789), wall.In(time.FixedZone("x", 3600))} {
				checkRowJSON(t, r, ownerOf(r), id, st.Now, at)
			}
		}
	}
}

func FuzzRowJSON(f *testing.F) {
	f.Add(uint64(7), uint32(1), uint8(tcp.Established), []byte{127, 0, 0, 1}, uint16(80), true, "curl", uint32(300), uint64(1e9), uint64(3e9), int64(0))
	f.Add(uint64(8), uint32(0), uint8(tcp.Listen), net6, uint16(0), false, "a\x00\"<é\xff", uint32(0), uint64(0), uint64(0), int64(-1))
	f.Fuzz(func(t *testing.T, cookie uint64, netns uint32, state uint8, addr []byte, port uint16, known bool, comm string, pid uint32, since, now uint64, wallNs int64) {
		a, ok := netip.AddrFromSlice(addr)
		if !ok || cookie == 0 {
			return
		}
		tb := table.New(table.Options{})
		ev := tracer.Event{Kind: tracer.Transition, Time: since, Cookie: cookie, NetNS: netns,
			Local: netip.AddrPortFrom(a, port), Remote: netip.AddrPortFrom(a, port^0xffff),
			Old: tcp.Close, New: tcp.State(state % uint8(tcp.NewSynRecv+1)), OwnerKnown: known,
			Owner: tracer.Process{PID: pid, Comm: comm}}
		tb.Apply(&ev)
		for i := range tb.Len() {
			r := tb.Row(i)
			checkRowJSON(t, r, ownerOf(r), container.Identity{}, now, time.Unix(0, wallNs))
		}
	})
}

var net6 = netip.MustParseAddr("2001:db8::1").AsSlice()

// TestDurationText holds appendDuration to the fmt layouts it replaced.
func TestDurationText(t *testing.T) {
	reference := func(d time.Duration) string {
		switch {
		case d < time.Second:
			return fmt.Sprintf("%dms", d/time.Millisecond)
		case d < time.Minute:
			return fmt.Sprintf("%.1fs", d.Seconds())
		case d < time.Hour:
			return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
		case d < 24*time.Hour:
			return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
		}
		return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	}
	ds := []time.Duration{0, 1, 999 * time.Millisecond, time.Second, 9950 * time.Millisecond, 59999 * time.Millisecond,
		time.Minute, 61 * time.Second, time.Hour - 1, time.Hour, 25 * time.Hour, 1000 * 24 * time.Hour, 1<<63 - 1}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		ds = append(ds, time.Duration(rng.Int64N(int64(1)<<uint(rng.IntN(60)+1))))
	}
	for _, d := range ds {
		if got, want := string(appendDuration(nil, d)), reference(d); got != want {
			t.Errorf("appendDuration(%d) = %s, want %s", d, got, want)
		}
	}
}
