package record

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// repeatWindow is how many of the last events a Writer keeps to write
// again after a checkpoint that does not hold them (see Checkpoint).
const repeatWindow = 64

// compressor is shared: EncodeAll may be called from any goroutine.
var compressor = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false), zstd.WithWindowSize(targetRaw))
})

// Truncater is what a Writer's file may also do: undo a partial write
// before the next one.
type Truncater interface {
	Truncate(size int64) error
}

// Writer writes one recording file: records go into a block, which is
// compressed, checksummed and written whole when it is full or on Flush.
// A Writer is for one goroutine at a time.
type Writer struct {
	out     io.Writer
	zenc    *zstd.Encoder
	enc     encoder
	frame   []byte
	written int64 // bytes of whole blocks on disk

	// The block being built.
	flags      uint8
	events     uint32
	records    uint32
	firstSeq   uint64
	first      uint64
	last       uint64
	haveTime   bool
	hasHeader  bool
	headerJSON []byte
	offset     int64 // the header's clock offset

	seq    uint64 // the next event's sequence number
	recent [repeatWindow]tracer.Event
	// recentFrom is the oldest sequence number recent holds.
	recentFrom uint64

	started   bool // a block holding the header is on disk
	gap       Gap  // what failed writes lost, until a block carries it
	gapOpen   bool
	recovered *Gap // the gap the last Flush wrote, for the caller to report
	stats     WriterStats
}

// WriterStats count what a Writer did.
type WriterStats struct {
	Events     uint64 // events written
	Blocks     uint64
	Bytes      int64 // on disk
	RawBytes   uint64
	NotWritten uint64 // events in blocks that failed to write
}

// NewWriter begins a file on out with hdr; seq is the sequence number of
// the next event (events keep their numbers across the files of one
// recording). gap, when its Events or Records are set, is what an earlier
// file could not write: it is recorded right after the header.
func NewWriter(out io.Writer, hdr Header, seq uint64, gap Gap) (*Writer, error) {
	zenc, err := compressor()
	if err != nil {
		return nil, fmt.Errorf("start zstd: %w", err)
	}
	hdr.FormatVersion = FormatVersion
	j, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("encode recording header: %w", err)
	}
	w := &Writer{out: out, zenc: zenc, seq: seq, headerJSON: j, firstSeq: seq, offset: hdr.ClockOffset, recentFrom: seq}
	w.enc.b = make([]byte, 0, targetRaw+64<<10)
	w.putHeader(hdr.StartBoot)
	if gap.Events > 0 || gap.Records > 0 {
		w.gap, w.gapOpen = gap, true
		w.putGap(hdr.StartBoot)
	}
	return w, nil
}

func (w *Writer) putHeader(t uint64) {
	s := w.enc.begin(TypeHeader)
	w.enc.b = append(w.enc.b, w.headerJSON...)
	w.enc.end(s)
	w.flags |= blockHasHeader
	w.hasHeader = true
	w.touch(t)
}

// putGap records the open gap, as of t.
func (w *Writer) putGap(t uint64) {
	g := &w.gap
	g.Until = t
	s := w.enc.begin(TypeGap)
	w.enc.uvarint(g.Since)
	w.enc.uvarint(g.Until)
	w.enc.uvarint(g.Events)
	w.enc.uvarint(g.Records)
	w.enc.uvarint(g.Bytes)
	w.enc.bytes(g.Reason)
	w.enc.end(s)
	w.touch(t)
}

func (w *Writer) touch(t uint64) {
	if !w.haveTime {
		w.first, w.last, w.haveTime = t, t, true
	}
	w.first, w.last = min(w.first, t), max(w.last, t)
	w.records++
}

// Seq is the sequence number the next event gets.
func (w *Writer) Seq() uint64 { return w.seq }

// Stats returns the counts so far.
func (w *Writer) Stats() WriterStats { return w.stats }

// Started reports that the file's first block, with the header, is on disk.
func (w *Writer) Started() bool { return w.started }

// Size is the bytes of whole blocks written so far.
func (w *Writer) Size() int64 { return w.written }

// Buffered is the raw bytes waiting for the next block write.
func (w *Writer) Buffered() int { return len(w.enc.b) }

// Event adds one event.
func (w *Writer) Event(ev *tracer.Event) error {
	if w.events == 0 {
		w.firstSeq = w.seq
	}
	w.enc.event(TypeEvent, ev)
	w.recent[w.seq%repeatWindow] = *ev
	w.seq++
	w.events++
	w.touch(ev.Time)
	if len(w.enc.b) >= targetRaw {
		return w.Flush()
	}
	return nil
}

// Clock records that the wall clock is now offset ns ahead of CLOCK_BOOTTIME.
func (w *Writer) Clock(t uint64, offset int64) error {
	w.timed(TypeClock, t, zigzag(offset))
	return nil
}

// timed appends a record of type typ holding its time t and one value.
func (w *Writer) timed(typ Type, t, v uint64) {
	s := w.enc.begin(typ)
	w.enc.uvarint(t)
	w.enc.uvarint(v)
	w.enc.end(s)
	w.touch(t)
}

// Loss records events the tracer lost.
func (w *Writer) Loss(t uint64, l Loss) error {
	s := w.enc.begin(TypeLoss)
	w.enc.uvarint(t)
	w.enc.bytes(l.Reason)
	w.enc.uvarint(l.Count)
	w.enc.uvarint(l.Total)
	w.enc.end(s)
	w.touch(t)
	return nil
}

// Stale records that the table went stale (typ TypeStale) or that a resync
// made it exact again (TypeResync); lost is the events lost so far.
func (w *Writer) Stale(typ Type, t uint64, lost uint64) error {
	if typ != TypeStale && typ != TypeResync {
		return fmt.Errorf("record type %s is not a stale marker", typ)
	}
	w.timed(typ, t, lost)
	return nil
}

// Held records, as of t, the time of the oldest event the filter holds
// back, 0 if none (see Record.Held).
func (w *Writer) Held(t, oldest uint64) error {
	w.timed(TypeHeld, t, oldest)
	return nil
}

// Checkpoint records the whole table as of t, with the clock offset then.
// cp.Seq says which events the table had read; events already written
// with that number or a higher one are written again after it as Repeat
// records, so a reader that starts here misses none of them.
func (w *Writer) Checkpoint(t uint64, offset int64, cp Checkpoint, tb *table.Table) error {
	if cp.Seq > w.seq {
		return fmt.Errorf("checkpoint after event %d, with %d events written", cp.Seq, w.seq)
	}
	// Events before recentFrom were lost to write errors: they cannot be
	// repeated.
	from := max(cp.Seq, w.recentFrom, w.seq-min(w.seq, repeatWindow))
	cp.Rows = uint64(tb.Len())
	s := w.enc.begin(TypeCheckpoint)
	w.enc.uvarint(t)
	w.enc.uvarint(zigzag(offset))
	w.enc.uvarint(cp.Seq)
	w.enc.uvarint(cp.Rows)
	w.enc.uvarint(cp.Lost)
	w.enc.uvarint(cp.Resyncs)
	var f uint64
	if cp.Stale {
		f |= 1
	}
	if cp.Tracing {
		f |= 2
	}
	w.enc.uvarint(f)
	w.enc.end(s)
	w.flags |= blockHasCheckpoint
	w.touch(t)
	for i := range tb.Len() {
		w.enc.row(tb.Row(i), t)
		w.records++
		if len(w.enc.b) >= targetRaw {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	s = w.enc.begin(TypeCheckEnd)
	w.enc.uvarint(t)
	w.enc.uvarint(cp.Rows)
	w.enc.uvarint(w.seq - from)
	w.enc.end(s)
	w.touch(t)
	for seq := from; seq < w.seq; seq++ {
		ev := &w.recent[seq%repeatWindow]
		w.enc.event(TypeRepeat, ev)
		w.touch(ev.Time)
	}
	return nil
}

// End records a clean end.
func (w *Writer) End(t uint64, e End) error {
	s := w.enc.begin(TypeEnd)
	w.enc.uvarint(t)
	w.enc.uvarint(e.Events)
	w.enc.uvarint(e.Lost)
	w.enc.uvarint(e.NotWritten)
	w.enc.end(s)
	w.touch(t)
	return nil
}

// WriteError is a block that could not be written: its records are lost,
// counted, and recorded as a gap by the next block that is written.
type WriteError struct {
	Events, Records uint64
	Bytes           int64
	Err             error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("write %d events: %v", e.Events, e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// Recovered returns the gap the last successful Flush recorded, once.
func (w *Writer) Recovered() (Gap, bool) {
	if w.recovered == nil {
		return Gap{}, false
	}
	g := *w.recovered
	w.recovered = nil
	return g, true
}

// PendingGap is what failed writes lost and no block has recorded yet.
func (w *Writer) PendingGap() (Gap, bool) { return w.gap, w.gapOpen }

// Flush compresses the block built so far and writes it.
func (w *Writer) Flush() error {
	if len(w.enc.b) == 0 {
		return nil
	}
	raw := w.enc.b
	f := w.frame[:0]
	f = append(f, Sync[:]...)
	h := len(f)
	f = append(f, make([]byte, blockHeaderLen)...)
	f = w.zenc.EncodeAll(raw, f)
	hdr := f[h : h+blockHeaderLen]
	hdr[0] = codecZstd
	hdr[1] = w.flags
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(f)-h-blockHeaderLen))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(hdr[12:], w.events)
	binary.LittleEndian.PutUint64(hdr[16:], w.firstSeq)
	binary.LittleEndian.PutUint64(hdr[24:], w.first)
	binary.LittleEndian.PutUint64(hdr[32:], w.last)
	crc := crc32.Update(crc32.Checksum(hdr[:40], castagnoli), castagnoli, f[h+blockHeaderLen:])
	binary.LittleEndian.PutUint32(hdr[40:], crc)
	w.frame = f

	n, err := w.out.Write(f)
	events, records, last := w.events, w.records, w.last
	w.enc.reset()
	w.flags, w.events, w.records, w.haveTime = 0, 0, 0, false
	w.firstSeq = w.seq
	if err == nil {
		w.written += int64(n)
		w.started = w.started || w.hasHeader
		w.stats.Blocks++
		w.stats.Bytes += int64(n)
		w.stats.Events += uint64(events)
		w.stats.RawBytes += uint64(len(raw))
		if w.gapOpen {
			g := w.gap
			w.recovered = &g
			w.gap, w.gapOpen = Gap{}, false
		}
		w.hasHeader = false
		return nil
	}
	// Take back a partial write, so that the next block follows the last
	// whole one (the reader would skip the debris, but need not).
	if t, ok := w.out.(Truncater); ok && n > 0 {
		_ = t.Truncate(w.written)
	}
	w.stats.NotWritten += uint64(events)
	if !w.gapOpen {
		w.gap = Gap{Since: w.first, Reason: err.Error()}
		w.gapOpen = true
	}
	w.gap.Events += uint64(events)
	w.gap.Records += uint64(records - events)
	w.gap.Bytes += uint64(len(f))
	// The next block says what this one held: the header again if it was
	// lost with it, then the gap.
	if !w.started {
		w.putHeader(last)
	}
	w.putGap(last)
	return &WriteError{Events: uint64(events), Records: uint64(records), Bytes: int64(len(f)), Err: err}
}

// Close flushes the last block. It does not close out.
func (w *Writer) Close() error {
	return w.Flush()
}

// headerOffset is the clock offset of the file's header.
func (w *Writer) headerOffset() int64 { return w.offset }

// Inherit takes the last events of the previous file's Writer, so that a
// checkpoint at the start of this file can repeat those it does not hold.
func (w *Writer) Inherit(prev *Writer) {
	if prev == nil || prev.seq != w.seq {
		return
	}
	w.recent, w.recentFrom = prev.recent, prev.recentFrom
}
