package replay

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/record"
)

// Markers are the records replay prints besides watch's events and
// losses: where the recording has a hole, and where the table went stale
// and was resynced. docs/recording.md describes their JSON.

// AppendGapJSON appends a "gap" object for records the recorder could not
// write.
func AppendGapJSON(b []byte, g record.Gap, offset int64) []byte {
	b = append(b, `{"type":"gap","time":"`...)
	b = record.Wall(g.Since, offset).UTC().AppendFormat(b, format.JSONTime)
	b = append(b, `","until":"`...)
	b = record.Wall(g.Until, offset).UTC().AppendFormat(b, format.JSONTime)
	b = append(b, `","reason":`...)
	b = format.AppendJSONString(b, "not_written: "+g.Reason)
	b = append(b, `,"events":`...)
	b = strconv.AppendUint(b, g.Events, 10)
	b = append(b, `,"records":`...)
	b = strconv.AppendUint(b, g.Records, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendUint(b, g.Bytes, 10)
	return append(b, "}\n"...)
}

// AppendCorruptJSON appends a "gap" object for a stretch of a file the
// reader skipped (a corrupt block, a torn tail); at is the time of the
// last record before it.
func AppendCorruptJSON(b []byte, c record.Corrupt, at time.Time) []byte {
	b = append(b, `{"type":"gap","time":"`...)
	b = at.UTC().AppendFormat(b, format.JSONTime)
	b = append(b, `","reason":"`...)
	if c.Torn {
		b = append(b, "torn_tail"...)
	} else {
		b = append(b, "corrupt"...)
	}
	b = append(b, `","file":`...)
	b = format.AppendJSONString(b, c.File)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, c.Offset, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, c.Bytes, 10)
	if c.Events >= 0 {
		b = append(b, `,"events_at_most":`...)
		b = strconv.AppendInt(b, c.Events, 10)
	}
	return append(b, "}\n"...)
}

// AppendStaleJSON appends a "stale" or "resync" object.
func AppendStaleJSON(b []byte, typ record.Type, at time.Time, lost uint64) []byte {
	name := "stale"
	if typ == record.TypeResync {
		name = "resync"
	}
	b = append(b, `{"type":"`...)
	b = append(b, name...)
	b = append(b, `","time":"`...)
	b = at.UTC().AppendFormat(b, format.JSONTime)
	b = append(b, `","lost":`...)
	b = strconv.AppendUint(b, lost, 10)
	return append(b, "}\n"...)
}

// AppendGapLine is the human form of the gap objects.
func AppendGapLine(b []byte, at time.Time, what string) []byte {
	b = at.Local().AppendFormat(b, "15:04:05.000000")
	return fmt.Appendf(b, " !! GAP %s\n", what)
}
