package format

import (
	"bytes"
	"time"
)

// Every event carries a time, and time.Time.AppendFormat parses its layout
// on each call: at full churn that was a third of the consumer's
// formatting. These write the two layouts we use directly.

// appendJSONTime appends t in UTC as JSONTime does.
func appendJSONTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	d, ok := appendDate(b, t)
	if !ok {
		return t.AppendFormat(b, JSONTime)
	}
	return append(appendDigits(d, t.Nanosecond(), 9), 'Z')
}

// AppendRFC3339Nano appends t in UTC as time.RFC3339Nano does, the layout
// encoding/json gives a time.Time: the fraction's trailing zeros dropped,
// and the dot with them when there is none.
func AppendRFC3339Nano(b []byte, t time.Time) []byte {
	t = t.UTC()
	d, ok := appendDate(b, t)
	if !ok {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	b = bytes.TrimRight(appendDigits(d, t.Nanosecond(), 9), "0")
	b = bytes.TrimSuffix(b, []byte("."))
	return append(b, 'Z')
}

// appendDate appends "2006-01-02T15:04:05." for t in its own zone; false,
// with nothing appended, for a year past four digits.
func appendDate(b []byte, t time.Time) ([]byte, bool) {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return b, false
	}
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	return appendHMS(b, t), true
}

// appendClock appends t's wall clock in its own zone as "15:04:05.000000".
func appendClock(b []byte, t time.Time) []byte {
	return appendDigits(appendHMS(b, t), t.Nanosecond()/1000, 6)
}

// appendHMS appends "15:04:05." for t in its own zone.
func appendHMS(b []byte, t time.Time) []byte {
	hour, min, sec := t.Clock()
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	return append(b, '.')
}

// appendDigits appends v, zero-padded to width digits; v must fit.
func appendDigits(b []byte, v, width int) []byte {
	n := len(b) + width
	b = append(b, "000000000"[:width]...)
	for i := n - 1; v > 0 && i >= n-width; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}
