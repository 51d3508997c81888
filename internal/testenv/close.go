package testenv

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// CloseClientFirst closes client, waits until server has read the FIN, then
// closes server: the client ends in TIME_WAIT and the server passes through
// CLOSE_WAIT. Closing both at once can cross the two FINs (a simultaneous
// close: both ends go through CLOSING to TIME_WAIT), which on a loaded
// machine happens now and then when the loopback FIN waits in a softirq.
func CloseClientFirst(t testing.TB, client, server net.Conn) {
	t.Helper()
	client.Close()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on %v after the client's close: %v, want EOF", server.LocalAddr(), err)
	}
	server.Close()
}
