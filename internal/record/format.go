// Package record writes and reads tcpstat recordings: a header, the
// connection table, then every event, loss, stale/resync marker and
// periodic checkpoint of the table, in checksummed zstd blocks that a
// reader can resynchronise on. docs/recording.md describes the format.
//
// The shape follows Prometheus' write-ahead log (records with a type, a
// length and a CRC-32C) with two differences: records are grouped into
// blocks compressed whole, and every block starts with a sync marker, so
// a reader skips a corrupt block by looking for the next marker instead
// of relying on fixed page boundaries.
package record

import (
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// FormatVersion is the version this package writes. Readers accept every
// version up to it; later versions only add record types and append
// fields to records, which older readers skip by length.
const FormatVersion = 1

// Sync starts every block on disk.
var Sync = [8]byte{0x89, 'T', 'C', 'P', 'R', 'E', 'C', 0x1a}

// Block layout on disk, after Sync (little-endian):
//
//	0  u8  codec (1: zstd)
//	1  u8  flags (blockHeader, blockCheckpoint)
//	2  u16 reserved, 0
//	4  u32 compressed payload length
//	8  u32 raw payload length
//	12 u32 events in the block
//	16 u64 sequence number of the block's first event
//	24 u64 first record time (CLOCK_BOOTTIME ns)
//	32 u64 last record time
//	40 u32 CRC-32C (Castagnoli) of bytes 0-39 and the payload
const (
	blockHeaderLen = 44
	frameOverhead  = len(Sync) + blockHeaderLen
	codecZstd      = 1

	blockHasHeader     = 1 << 0 // holds the file's header record
	blockHasCheckpoint = 1 << 1 // holds the start of a checkpoint

	// maxRaw bounds a block's raw payload; a reader rejects larger ones.
	maxRaw = 4 << 20
	// targetRaw is where the writer ends a block.
	targetRaw = 256 << 10
)

// Type is a record's type.
type Type uint8

// Record types. Numbers are part of the format: never reuse one.
const (
	TypeHeader     Type = 1  // JSON Header; first record of a file
	TypeClock      Type = 2  // the wall-clock offset changed
	TypeEvent      Type = 3  // a tracer event
	TypeLoss       Type = 4  // events the tracer lost
	TypeStale      Type = 5  // the table went stale (events lost)
	TypeResync     Type = 6  // a resync made the table exact again
	TypeCheckpoint Type = 7  // a checkpoint begins; Row records follow
	TypeRow        Type = 8  // one row of a checkpoint
	TypeCheckEnd   Type = 9  // a checkpoint ends; Repeat records follow
	TypeRepeat     Type = 10 // an event already written, not in the checkpoint
	TypeGap        Type = 11 // records the recorder could not write
	TypeEnd        Type = 12 // the recorder ended cleanly
	TypeHeld       Type = 13 // the oldest event the filter still holds back
	// TypeCorrupt is never written: the reader returns it for a block it
	// skipped, or for a torn tail.
	TypeCorrupt Type = 255
)

var typeNames = map[Type]string{
	TypeHeader: "header", TypeClock: "clock", TypeEvent: "event", TypeLoss: "loss", TypeStale: "stale",
	TypeResync: "resync", TypeCheckpoint: "checkpoint", TypeRow: "row", TypeCheckEnd: "checkpoint end",
	TypeRepeat: "repeat", TypeGap: "gap", TypeEnd: "end", TypeHeld: "held", TypeCorrupt: "corrupt",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "unknown"
}

// Header says where and how a recording was made.
type Header struct {
	FormatVersion int    `json:"format_version"`
	Version       string `json:"tcpstat_version"`
	Host          string `json:"host"`
	Kernel        string `json:"kernel"`
	BootID        string `json:"boot_id"`
	// ClockOffset is wall-clock minus CLOCK_BOOTTIME, in ns, at Start.
	ClockOffset int64     `json:"clock_offset_ns"`
	Start       time.Time `json:"start"`
	StartBoot   uint64    `json:"start_boot_ns"`
	Filter      string    `json:"filter"`
	// Checkpoint is the interval between checkpoints.
	Checkpoint time.Duration `json:"checkpoint_ns"`
	// File numbers the files of one rotated recording, from 0.
	File int `json:"file"`
	// Held says the recorder writes a Held record every flush: the filter
	// holds a socket's events until it can judge the socket, so events
	// may be written after later ones (see Record.Held).
	Held bool `json:"held_records,omitempty"`
}

// Loss is what the tracer lost since the last Loss record.
type Loss struct {
	Reason string // format.LostRingBufferFull, format.LostRecursion, …
	Count  uint64
	Total  uint64
}

// Checkpoint describes the table a checkpoint holds.
type Checkpoint struct {
	// Seq is the number of events the table had read: events with a
	// lower sequence number are in it.
	Seq     uint64
	Rows    uint64
	Lost    uint64 // events lost so far
	Stale   bool   // the table was stale (losses not yet repaired)
	Tracing bool   // false when the table came from dumps alone
	Resyncs uint64
	Repeats uint64 // set on TypeCheckEnd: Repeat records that follow
}

// Gap is what the recorder could not write (disk full, write error).
type Gap struct {
	Since   uint64 // CLOCK_BOOTTIME ns of the first failure
	Until   uint64 // when writing worked again
	Events  uint64 // events not written
	Records uint64 // other records not written
	Bytes   uint64 // compressed bytes not written
	Reason  string
}

// End is what a recorder wrote at a clean exit.
type End struct {
	Events     uint64 // events written in this file
	Lost       uint64 // events the tracer lost, since the start
	NotWritten uint64 // events the recorder could not write, since the start
}

// Corrupt is a stretch of a file the reader skipped.
type Corrupt struct {
	File   string
	Offset int64 // where the bad bytes begin
	Bytes  int64 // how many were skipped
	// Events is how many events the stretch held at most, from its block
	// header when one was readable (-1 when not).
	Events int64
	Torn   bool // a torn tail: nothing readable follows
	Reason string
}

// Record is one record read back. Only the fields of its Type are set.
type Record struct {
	Type       Type
	Time       uint64 // CLOCK_BOOTTIME ns
	Seq        uint64 // TypeEvent, TypeRepeat
	Event      tracer.Event
	Header     Header
	Offset     int64 // TypeClock: wall minus boot ns
	Loss       Loss
	Checkpoint Checkpoint
	Row        table.Conn
	Gap        Gap
	End        End
	Corrupt    Corrupt
	// Held, on TypeHeld, is the time of the oldest event the filter held
	// back then, 0 if none: every event older than it, or every event when
	// 0, that the recorder had read is written before this record.
	Held uint64
}

// Wall converts a CLOCK_BOOTTIME stamp with a clock offset.
func Wall(boot uint64, offset int64) time.Time { return time.Unix(0, int64(boot)+offset) }

func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}
