package record

import (
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
)

var churn = recordtest.Churn
