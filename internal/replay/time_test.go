package replay

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	loc := time.Local
	ref := time.Date(2026, 11, 30, 2, 0, 0, 0, loc) // the recording starts at 02:00
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, loc)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-30T03:12:07Z", time.Date(2026, 11, 30, 3, 12, 7, 0, time.UTC)},
		{"2026-11-30T03:12:07.5+01:00", time.Date(2026, 11, 30, 2, 12, 7, 5e8, time.UTC)},
		{"03:12:07", time.Date(2026, 11, 30, 3, 12, 7, 0, loc)},
		{"03:12:07.250", time.Date(2026, 11, 30, 3, 12, 7, 25e7, loc)},
		{"03:12", time.Date(2026, 11, 30, 3, 12, 0, 0, loc)},
		// Before the start: the next day.
		{"01:30:00", time.Date(2026, 12, 1, 1, 30, 0, 0, loc)},
		{"-15m", now.Add(-15 * time.Minute)},
		{"-2h30m", now.Add(-150 * time.Minute)},
	} {
		got, err := ParseTime(tc.in, ref, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "25:00", "15m", "2026-11-30"} {
		if _, err := ParseTime(bad, ref, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}
