package topview

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
)

// Header is the summary above the rows: mode, counts, event rate, losses,
// the stale marker, then the count of each state present.
func (f *Frame) Header(wall time.Time, eventsPerSec float64, opts Options) []string {
	st := f.Status
	mode := "tracing"
	if !st.Tracing {
		mode = "polling: transitions between dumps are not seen"
		if st.PollReason != "" {
			mode += " (" + st.PollReason + ")"
		}
	}
	first := fmt.Sprintf("tcpstat top - %s  %s  connections %d", wall.Format("15:04:05"), mode, f.Total)
	if f.Len() != f.Total {
		first += fmt.Sprintf(" (%d shown)", f.Len())
	}
	if st.Tracing {
		first += fmt.Sprintf("  events/s %.0f  lost %d", eventsPerSec, st.Lost)
		if st.Corrupt > 0 {
			first += fmt.Sprintf(" (%d corrupt)", st.Corrupt)
		}
		first += fmt.Sprintf("  resyncs %d", st.Resyncs)
	}
	if st.Stale {
		first += "  STALE: events lost, resyncing"
	}
	var nsErr *snapshot.NetNSError
	if errors.As(st.NetNSErr, &nsErr) {
		first += fmt.Sprintf("  PARTIAL NETNS: %d of %d namespaces not dumped (%v)", nsErr.Failed, nsErr.Of, nsErr.First)
	}
	if st.OwnersUnreadable > 0 {
		first += fmt.Sprintf("  PARTIAL OWNERS: %d processes unreadable, their sockets show none", st.OwnersUnreadable)
	}
	switch {
	case st.Err != nil:
		first += "  stopped: " + st.Err.Error()
	case st.EventsEnded:
		first += "  events ended"
	}
	if st.DumpErr != nil {
		first += "  last dump failed: " + st.DumpErr.Error()
	}
	var counts []string
	for _, s := range headerStates {
		if n := f.Counts[s]; n > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", s, n))
		}
	}
	third := "sort " + opts.Sort.String()
	if opts.Reverse {
		third += " (reversed)"
	}
	if !opts.Filter.Empty() {
		third += "  filter " + strconv.Quote(opts.Filter.String())
	}
	return []string{first, strings.Join(counts, "  "), third}
}

// columns are the frame's columns: POD (the owner's pod as namespace/name,
// or its container's short id) when an owner is in one, and NETNS (the
// namespace inode) when the table holds more than one network namespace.
func (f *Frame) columns() []string {
	cols := []string{"PID", "COMM"}
	if f.Pods {
		cols = append(cols, "POD")
	}
	if f.Namespaces > 1 {
		cols = append(cols, "NETNS")
	}
	return append(cols, "LOCAL", "REMOTE", "STATE", "TIME", "COOKIE")
}

// Lines formats rows [from, from+n) of the frame (fewer at its end) under
// a column header, each column as wide as its widest cell shown.
func (f *Frame) Lines(from, n int) (head string, lines []string) {
	from = max(0, min(from, f.Len()))
	to := min(f.Len(), from+max(n, 0))
	var b strings.Builder
	f.writeLines(&b, from, to, func(line string) {
		if head == "" {
			head = line
			return
		}
		lines = append(lines, line)
	})
	return head, lines
}

// writeLines measures rows [from, to) for the column widths, then formats
// them one at a time and hands each line to emit, the column header first:
// no row's cells outlive its line, so a 100 000-row frame never holds its
// whole text.
func (f *Frame) writeLines(b *strings.Builder, from, to int, emit func(string)) {
	cols := f.columns()
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = len(c)
	}
	row := make([]string, 0, len(cols))
	for i := from; i < to; i++ {
		row = f.cells(row[:0], i)
		for j, c := range row {
			width[j] = max(width[j], utf8.RuneCountInString(c))
		}
	}
	format := func(row []string) string {
		b.Reset()
		for j, c := range row {
			if j > 0 {
				b.WriteByte(' ')
			}
			if cols[j] == "PID" || cols[j] == "TIME" {
				padSpaces(b, width[j]-utf8.RuneCountInString(c)) // numbers right-aligned
				b.WriteString(c)
			} else if j < len(row)-1 {
				b.WriteString(c)
				padSpaces(b, width[j]-utf8.RuneCountInString(c))
			} else {
				b.WriteString(c)
			}
		}
		return b.String()
	}
	emit(format(cols))
	for i := from; i < to; i++ {
		row = f.cells(row[:0], i)
		emit(format(row))
	}
}

// cells appends the i-th shown row's cells to row.
func (f *Frame) cells(row []string, i int) []string {
	r := f.Row(i)
	pid, comm := ownerText(f.Owner(i))
	row = append(row, pid, comm)
	if f.Pods {
		pod := f.Identity(i).Short()
		if pod == "" {
			pod = "-"
		}
		row = append(row, pod)
	}
	if f.Namespaces > 1 {
		row = append(row, strconv.FormatUint(uint64(r.NetNS()), 10))
	}
	return append(row, addrText(r.Local()), addrText(r.Remote()), stateText(r), ageText(r, f.Status.Now),
		strconv.FormatUint(r.Cookie(), 10))
}

func padSpaces(b *strings.Builder, n int) {
	for range n {
		b.WriteByte(' ')
	}
}

// ownerText is the PID and COMM cells: a former owner's name in
// parentheses, "-" when unknown.
func ownerText(o Owner) (pid, comm string) {
	switch {
	case !o.Known:
		return "-", "-"
	case o.Former:
		return strconv.FormatUint(uint64(o.PID), 10), "(" + format.Printable(o.Comm) + ")"
	}
	return strconv.FormatUint(uint64(o.PID), 10), format.Printable(o.Comm)
}

// WriteText writes the whole frame as top -b does: header, a blank line,
// the column header and every row.
func (f *Frame) WriteText(w io.Writer, wall time.Time, eventsPerSec float64, opts Options) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, l := range f.Header(wall, eventsPerSec, opts) {
		bw.WriteString(l + "\n")
	}
	bw.WriteString("\n")
	var b strings.Builder
	f.writeLines(&b, 0, f.Len(), func(line string) {
		bw.WriteString(line)
		bw.WriteByte('\n')
	})
	bw.WriteString("\n")
	return bw.Flush()
}

// jsonFrame is one refresh in --json output.
type jsonFrame struct {
	Time    time.Time `json:"time"`
	Tracing bool      `json:"tracing"`
	Events  uint64    `json:"events"`
	Lost    uint64    `json:"lost"`
	Corrupt uint64    `json:"corrupt"` // of lost: samples that could not be decoded
	Stale   bool      `json:"stale"`
	Resyncs uint64    `json:"resyncs"`
	// OwnersUnreadable is how many processes the last owner scan could not
	// read: their sockets show no owner.
	OwnersUnreadable int `json:"owners_unreadable"`
	// OwnerScan is how the last owner scan found the descriptors: "bpf
	// task_file iterator" or "/proc/*/fd walk"; absent before one.
	OwnerScan   string     `json:"owner_scan,omitempty"`
	Total       int        `json:"total"`
	Connections []jsonConn `json:"connections"`
}

type jsonConn struct {
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

// WriteJSON writes the frame as one JSON object on one line. wall is the
// wall-clock time of Status.Now, to convert the kernel's boot-time stamps.
func (f *Frame) WriteJSON(w io.Writer, wall time.Time) error {
	head := jsonFrame{
		Time: wall, Tracing: f.Status.Tracing, Events: f.Status.Events, Lost: f.Status.Lost, Corrupt: f.Status.Corrupt,
		Stale: f.Status.Stale, Resyncs: f.Status.Resyncs, OwnersUnreadable: f.Status.OwnersUnreadable,
		OwnerScan: f.Status.OwnerScan, Total: f.Total,
		Connections: []jsonConn{},
	}
	b, err := json.Marshal(head)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	// Connections is the last field: stream the rows into its brackets one
	// at a time instead of marshalling a slice of every row.
	b = bytes.TrimSuffix(b, []byte("]}"))
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(b)
	for i := range f.Len() {
		if i > 0 {
			bw.WriteByte(',')
		}
		c, err := json.Marshal(jsonRow(f.Row(i), f.Owner(i), f.Identity(i), f.Status.Now, wall))
		if err != nil {
			return fmt.Errorf("encode frame: %w", err)
		}
		bw.Write(c)
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}

func jsonRow(r *table.Row, o Owner, id container.Identity, now uint64, wall time.Time) jsonConn {
	_, known := r.Since()
	c := jsonConn{
		Cookie: r.Cookie(), NetNS: r.NetNS(), State: displayState(r.State()).String(), Inferred: r.Inferred(), TimeWait: r.TimeWait(),
		Saddr: r.Local().Addr().String(), Sport: r.Local().Port(),
		Daddr: r.Remote().Addr().String(), Dport: r.Remote().Port(),
		Since: wall.Add(-time.Duration(age(r, now))).UTC(), SinceKnown: known,
	}
	if o.Known {
		// encoding/json escapes control characters and replaces invalid
		// UTF-8, as watch's JSON does.
		src := o.Source.String()
		c.PID, c.Comm, c.OwnerFormer, c.OwnerSource = &o.PID, &o.Comm, o.Former, &src
	}
	c.Container, c.PodUID, c.PodNamespace = id.Container, id.PodUID, id.PodNamespace
	c.Pod = id.PodName
	if c.Pod == "" {
		c.Pod = id.PodUID
	}
	return c
}
