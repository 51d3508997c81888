package table

import (
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// dwellStates are the states a row keeps a dwell time for: every state a
// socket can stay in (CLOSE ends the row; request sockets are never traced).
var dwellStates = [...]tcp.State{
	tcp.Established, tcp.SynSent, tcp.SynRecv, tcp.FinWait1, tcp.FinWait2,
	tcp.TimeWait, tcp.CloseWait, tcp.LastAck, tcp.Listen, tcp.Closing,
}

const dwellSlots = len(dwellStates)

var dwellSlotOf = func() (m [256]int8) {
	for i := range m {
		m[i] = -1
	}
	for i, s := range dwellStates {
		m[s] = int8(i)
	}
	return m
}()

func dwellSlot(s tcp.State) int { return int(dwellSlotOf[s]) }

// dwell is a duration in 4 bytes: 30 bits of value in the unit the top two
// bits name. Handshakes keep microseconds (up to 17 minutes), long-lived
// connections milliseconds (up to 12 days) or seconds (decades).
type dwell uint32

const (
	dwellValueBits = 30
	dwellMaxValue  = 1<<dwellValueBits - 1
)

var dwellUnits = [...]time.Duration{time.Microsecond, time.Millisecond, time.Second}

func makeDwell(d time.Duration) dwell {
	if d <= 0 {
		return 0
	}
	for u, unit := range dwellUnits {
		if v := d / unit; v <= dwellMaxValue {
			return dwell(u)<<dwellValueBits | dwell(v)
		}
	}
	return dwell(len(dwellUnits)-1)<<dwellValueBits | dwellMaxValue
}

func (d dwell) duration() time.Duration {
	return time.Duration(d&dwellMaxValue) * dwellUnits[d>>dwellValueBits]
}

func (d dwell) add(more time.Duration) dwell { return makeDwell(d.duration() + more) }
