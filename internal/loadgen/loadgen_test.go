package loadgen

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestRunMix runs a small workload on loopback: it must make connections,
// replace listeners and stop by itself.
func TestRunMix(t *testing.T) {
	st, err := RunMix(context.Background(), Mix{
		Server: netip.MustParseAddr("127.79.0.1"), Client: netip.MustParseAddr("127.79.0.2"),
		Seed: 1, Duration: 3 * time.Second, Connections: 300, InFlight: 40, Listeners: 2,
		MaxIdle: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections < 150 || st.Listeners < 3 {
		t.Errorf("stats %+v: want at least 150 connections and a replaced listener", st)
	}
}

func TestHold(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	ready := make(chan struct{})
	go func() {
		done <- Hold(ctx, netip.MustParseAddr("127.79.1.1"), netip.MustParseAddr("127.79.1.2"), 50, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Hold returned before it was ready: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
