package topview

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
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
	first := true
	f.writeLines(from, to, func(line []byte) {
		if first {
			head, first = string(line), false
			return
		}
		lines = append(lines, string(line))
	})
	return head, lines
}

// rowText is one row's cells as text, in one buffer reused across rows.
type rowText struct {
	buf  []byte
	ends []int // ends[j] is where cell j ends in buf
}

func (t *rowText) reset()          { t.buf, t.ends = t.buf[:0], t.ends[:0] }
func (t *rowText) end()            { t.ends = append(t.ends, len(t.buf)) }
func (t *rowText) add(s string)    { t.buf = append(t.buf, s...); t.end() }
func (t *rowText) width(j int) int { return utf8.RuneCount(t.cell(j)) }

func (t *rowText) cell(j int) []byte {
	if j == 0 {
		return t.buf[:t.ends[0]]
	}
	return t.buf[t.ends[j-1]:t.ends[j]]
}

// writeLines measures rows [from, to) for the column widths, then formats
// them one at a time and hands each line to emit, the column header first.
// Cells and lines are written into buffers reused from row to row: a
// 100 000-row frame neither holds its whole text nor allocates per row.
// emit must not keep the line.
func (f *Frame) writeLines(from, to int, emit func(line []byte)) {
	var head, row rowText
	for _, c := range f.columns() {
		head.add(c)
	}
	width := make([]int, len(head.ends))
	right := make([]bool, len(head.ends)) // numbers are right-aligned
	for j := range width {
		width[j] = head.width(j)
		c := string(head.cell(j))
		right[j] = c == "PID" || c == "TIME"
	}
	for i := from; i < to; i++ {
		f.cells(&row, i)
		for j := range width {
			width[j] = max(width[j], row.width(j))
		}
	}
	var line []byte
	format := func(t *rowText) []byte {
		line = line[:0]
		last := len(t.ends) - 1
		for j := range t.ends {
			if j > 0 {
				line = append(line, ' ')
			}
			c, pad := t.cell(j), width[j]-t.width(j)
			switch {
			case right[j]:
				line = append(appendSpaces(line, pad), c...)
			case j < last:
				line = appendSpaces(append(line, c...), pad)
			default:
				line = append(line, c...)
			}
		}
		return line
	}
	emit(format(&head))
	for i := from; i < to; i++ {
		f.cells(&row, i)
		emit(format(&row))
	}
}

// cells sets t to the i-th shown row's cells.
func (f *Frame) cells(t *rowText, i int) {
	t.reset()
	r := f.Row(i)
	// PID and COMM: a former owner's name in parentheses, "-" when unknown.
	if o := f.Owner(i); !o.Known {
		t.add("-")
		t.add("-")
	} else {
		t.buf = strconv.AppendUint(t.buf, uint64(o.PID), 10)
		t.end()
		if o.Former {
			t.buf = append(append(append(t.buf, '('), format.Printable(o.Comm)...), ')')
		} else {
			t.buf = append(t.buf, format.Printable(o.Comm)...)
		}
		t.end()
	}
	if f.Pods {
		pod := f.Identity(i).Short()
		if pod == "" {
			pod = "-"
		}
		t.add(pod)
	}
	if f.Namespaces > 1 {
		t.buf = strconv.AppendUint(t.buf, uint64(r.NetNS()), 10)
		t.end()
	}
	for _, a := range [2]netip.AddrPort{r.Local(), r.Remote()} {
		t.buf = appendAddrPort(t.buf, a)
		t.end()
	}
	t.buf = appendState(t.buf, r)
	t.end()
	t.buf = appendAge(t.buf, r, f.Status.Now)
	t.end()
	t.buf = strconv.AppendUint(t.buf, r.Cookie(), 10)
	t.end()
}

func appendSpaces(b []byte, n int) []byte {
	for range n {
		b = append(b, ' ')
	}
	return b
}

// WriteText writes the whole frame as top -b does: header, a blank line,
// the column header and every row.
func (f *Frame) WriteText(w io.Writer, wall time.Time, eventsPerSec float64, opts Options) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, l := range f.Header(wall, eventsPerSec, opts) {
		bw.WriteString(l + "\n")
	}
	bw.WriteString("\n")
	f.writeLines(0, f.Len(), func(line []byte) {
		bw.Write(line)
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
	Connections []struct{} `json:"connections"` // written by appendRowJSON
}

// WriteJSON writes the frame as one JSON object on one line. wall is the
// wall-clock time of Status.Now, to convert the kernel's boot-time stamps.
func (f *Frame) WriteJSON(w io.Writer, wall time.Time) error {
	head := jsonFrame{
		Time: wall, Tracing: f.Status.Tracing, Events: f.Status.Events, Lost: f.Status.Lost, Corrupt: f.Status.Corrupt,
		Stale: f.Status.Stale, Resyncs: f.Status.Resyncs, OwnersUnreadable: f.Status.OwnersUnreadable,
		OwnerScan: f.Status.OwnerScan, Total: f.Total,
		Connections: []struct{}{},
	}
	b, err := json.Marshal(head)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	// Connections is the last field: stream the rows into its brackets one
	// at a time instead of marshalling a slice of every row. Each row is
	// appended by hand: encoding/json's reflection was most of a frame's
	// time, and the frame is written under the table's lock.
	b = bytes.TrimSuffix(b, []byte("]}"))
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(b)
	row := make([]byte, 0, 512)
	for i := range f.Len() {
		row = row[:0]
		if i > 0 {
			row = append(row, ',')
		}
		row = appendRowJSON(row, f.Row(i), f.Owner(i), f.Identity(i), f.Status.Now, wall)
		bw.Write(row)
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}

// appendRowJSON appends one row of a frame's "connections" as a JSON
// object. Its fields, their order and values are those encoding/json gave
// the struct it replaced, which the tests keep, with what each field
// means, as the reference (referenceConn).
func appendRowJSON(b []byte, r *table.Row, o Owner, id container.Identity, now uint64, wall time.Time) []byte {
	b = append(b, `{"cookie":`...)
	b = strconv.AppendUint(b, r.Cookie(), 10)
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, uint64(r.NetNS()), 10)
	b = append(b, `,"state":"`...)
	b = append(b, displayState(r.State()).String()...)
	b = append(b, `","inferred":`...)
	b = strconv.AppendBool(b, r.Inferred())
	b = append(b, `,"timewait":`...)
	b = strconv.AppendBool(b, r.TimeWait())
	b = append(b, `,"saddr":"`...)
	b = appendAddr(b, r.Local().Addr())
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(r.Local().Port()), 10)
	b = append(b, `,"daddr":"`...)
	b = appendAddr(b, r.Remote().Addr())
	b = append(b, `","dport":`...)
	b = strconv.AppendUint(b, uint64(r.Remote().Port()), 10)
	if o.Known {
		b = append(b, `,"pid":`...)
		b = strconv.AppendUint(b, uint64(o.PID), 10)
		b = append(b, `,"comm":`...)
		// Control characters escaped, invalid UTF-8 replaced, as in
		// watch's JSON.
		b = format.AppendJSONString(b, o.Comm)
		b = append(b, `,"owner_former":`...)
		b = strconv.AppendBool(b, o.Former)
		b = append(b, `,"owner_source":"`...)
		b = append(b, o.Source.String()...)
		b = append(b, '"')
	} else {
		b = append(b, `,"pid":null,"comm":null,"owner_former":false,"owner_source":null`...)
	}
	_, known := r.Since()
	b = append(b, `,"since":"`...)
	b = format.AppendRFC3339Nano(b, wall.Add(-time.Duration(age(r, now))))
	b = append(b, `","since_known":`...)
	b = strconv.AppendBool(b, known)
	b = id.AppendJSON(b)
	return append(b, '}')
}

// appendAddr appends a's text as netip.Addr.String gives it.
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, a.String()...)
	}
	return a.AppendTo(b)
}
