package replay

import (
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// EventRow is one event in Parquet (docs/recording.md, "Parquet"). Host
// and boot id come with every row so that recordings of many hosts can be
// queried together; the cookie is unique per boot.
type EventRow struct {
	Host          string    `parquet:"host,dict"`
	BootID        string    `parquet:"boot_id,dict"`
	Time          time.Time `parquet:"time,timestamp(nanosecond)"`
	Type          string    `parquet:"type,dict"`
	Cookie        uint64    `parquet:"cookie"`
	NetNS         uint32    `parquet:"netns"`
	Family        string    `parquet:"family,dict"`
	Saddr         string    `parquet:"saddr,dict"`
	Sport         uint16    `parquet:"sport"`
	Daddr         string    `parquet:"daddr,dict"`
	Dport         uint16    `parquet:"dport"`
	OldState      string    `parquet:"old_state,dict"`
	NewState      string    `parquet:"new_state,dict"`
	Inferred      bool      `parquet:"inferred"`
	PID           *uint32   `parquet:"pid,optional"`
	Comm          *string   `parquet:"comm,optional,dict"`
	UID           *uint32   `parquet:"uid,optional"`
	Cgroup        *uint64   `parquet:"cgroup,optional"`
	OwnerSource   *string   `parquet:"owner_source,optional,dict"`
	TaskPID       uint32    `parquet:"task_pid"`
	TaskComm      string    `parquet:"task_comm,dict"`
	DwellNs       *int64    `parquet:"dwell_ns,optional"`
	Reason        *string   `parquet:"reason,optional,dict"`
	Errno         *uint16   `parquet:"errno,optional"`
	BytesReceived *uint64   `parquet:"bytes_received,optional"`
	BytesAcked    *uint64   `parquet:"bytes_acked,optional"`
	Retransmits   *uint32   `parquet:"retransmits,optional"`
	SrttUs        *int64    `parquet:"srtt_us,optional"`
}

// ConnRow is one row of the table as of At, in Parquet.
type ConnRow struct {
	Host        string    `parquet:"host,dict"`
	BootID      string    `parquet:"boot_id,dict"`
	At          time.Time `parquet:"at,timestamp(nanosecond)"`
	Cookie      uint64    `parquet:"cookie"`
	NetNS       uint32    `parquet:"netns"`
	Saddr       string    `parquet:"saddr,dict"`
	Sport       uint16    `parquet:"sport"`
	Daddr       string    `parquet:"daddr,dict"`
	Dport       uint16    `parquet:"dport"`
	State       string    `parquet:"state,dict"`
	Inferred    bool      `parquet:"inferred"`
	TimeWait    bool      `parquet:"timewait"`
	PID         *uint32   `parquet:"pid,optional"`
	Comm        *string   `parquet:"comm,optional,dict"`
	OwnerFormer bool      `parquet:"owner_former"`
	Since       time.Time `parquet:"since,timestamp(nanosecond)"`
	SinceKnown  bool      `parquet:"since_known"`
}

// EventWriter writes events as Parquet.
type EventWriter struct {
	w   *parquet.GenericWriter[EventRow]
	buf []EventRow
}

// NewEventWriter writes to out; Close ends the file.
func NewEventWriter(out io.Writer) *EventWriter {
	return &EventWriter{w: parquet.NewGenericWriter[EventRow](out, parquet.Compression(&parquet.Zstd))}
}

func ptr[T any](v T) *T { return &v }

// Write adds one event of the recording f, at wall-clock time at.
func (w *EventWriter) Write(f *File, ev *tracer.Event, at time.Time) error {
	r := EventRow{Host: f.Header.Host, BootID: f.Header.BootID, Time: at, Type: ev.Kind.String(), Cookie: ev.Cookie,
		NetNS: ev.NetNS, Family: "inet", Saddr: ev.Local.Addr().String(), Sport: ev.Local.Port(),
		Daddr: ev.Remote.Addr().String(), Dport: ev.Remote.Port(), OldState: ev.Old.String(), NewState: ev.New.String(),
		Inferred: ev.Inferred, TaskPID: ev.Task.PID, TaskComm: ev.Task.Comm}
	if ev.IPv6() {
		r.Family = "inet6"
	}
	if ev.OwnerKnown {
		r.PID, r.Comm, r.UID, r.Cgroup = ptr(ev.Owner.PID), ptr(ev.Owner.Comm), ptr(ev.Owner.UID), ptr(ev.Owner.Cgroup)
		r.OwnerSource = ptr(ev.OwnerSource.String())
	}
	if ev.DwellKnown {
		r.DwellNs = ptr(int64(ev.Dwell))
	}
	if ev.Reason != tracer.ReasonNone {
		r.Reason, r.Errno = ptr(ev.Reason.String()), ptr(ev.Errno)
		r.BytesReceived, r.BytesAcked = ptr(ev.Counters.BytesReceived), ptr(ev.Counters.BytesAcked)
		r.Retransmits, r.SrttUs = ptr(ev.Counters.Retransmits), ptr(ev.Counters.SRTT.Microseconds())
	}
	w.buf = append(w.buf, r)
	if len(w.buf) == cap(w.buf) && len(w.buf) >= 4096 {
		return w.flush()
	}
	return nil
}

func (w *EventWriter) flush() error {
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	w.buf = w.buf[:0]
	return nil
}

// Close writes what is buffered and the file's footer.
func (w *EventWriter) Close() error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	return nil
}

// WriteTable writes the rows of st's table that keep selects (nil: all)
// as Parquet.
func WriteTable(out io.Writer, st *State, keep func(*table.Row) bool) error {
	w := parquet.NewGenericWriter[ConnRow](out, parquet.Compression(&parquet.Zstd))
	rows := make([]ConnRow, 0, st.Table.Len())
	f := st.File
	for i := range st.Table.Len() {
		if keep != nil && !keep(st.Table.Row(i)) {
			continue
		}
		c := st.Table.Row(i).Conn()
		r := connRow(f, &c, st)
		rows = append(rows, r)
	}
	if _, err := w.Write(rows); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	return nil
}

func connRow(f *File, c *table.Conn, st *State) ConnRow {
	r := ConnRow{Host: f.Header.Host, BootID: f.Header.BootID, At: st.Wall, Cookie: c.Cookie, NetNS: c.NetNS,
		Saddr: c.Local.Addr().String(), Sport: c.Local.Port(), Daddr: c.Remote.Addr().String(), Dport: c.Remote.Port(),
		State: c.State.String(), Inferred: c.Inferred, TimeWait: c.TimeWait, OwnerFormer: c.OwnerFormer,
		Since: record.Wall(c.Since, st.Offset), SinceKnown: c.SinceKnown}
	if c.OwnerKnown {
		r.PID, r.Comm = ptr(c.Owner.PID), ptr(c.Owner.Comm)
	}
	return r
}
