package table

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func TestCommRegistry(t *testing.T) {
	c := newCommRegistry()
	if id := c.acquire(""); id != 0 || c.name(0) != "" {
		t.Fatalf(`acquire("") = %d, want 0`, id)
	}
	curl := c.acquire("curl")
	if again := c.acquire("curl"); again != curl {
		t.Fatalf("curl interned twice: %d, %d", curl, again)
	}
	nginx := c.acquire("nginx")
	if c.name(curl) != "curl" || c.name(nginx) != "nginx" || c.live() != 2 {
		t.Fatalf("names %q %q, %d live", c.name(curl), c.name(nginx), c.live())
	}
	c.release(curl)
	if c.name(curl) != "curl" || c.live() != 2 {
		t.Fatal("curl freed while a holder is left")
	}
	c.release(curl)
	if c.live() != 1 {
		t.Fatalf("%d live after curl's last release, want 1", c.live())
	}
	// A freed id is reused; the name it had is gone.
	if sshd := c.acquire("sshd"); sshd != curl || c.name(sshd) != "sshd" {
		t.Fatalf("sshd = %d (%q), want the freed id %d", sshd, c.name(sshd), curl)
	}
	if again := c.acquire("curl"); again == curl {
		t.Fatal("curl got its freed id back while sshd holds it")
	}
}

// TestRowHasNoPointers keeps the row chunks out of the garbage collector's
// scan (see commNames) and lets them live outside the Go heap (chunks.go),
// where the collector does not look: a Go pointer stored in a row would
// leave what it points to unreachable to it.
func TestRowHasNoPointers(t *testing.T) {
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				walk(typ.Field(i).Type, path+"."+typ.Field(i).Name)
			}
		case reflect.Array:
			walk(typ.Elem(), path+"[]")
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("Row%s is a %s: rows must hold no pointers", path, typ.Kind())
		}
	}
	walk(reflect.TypeOf(Row{}), "")
}

// TestCommNamesFollowRows checks that rows release their names as owners
// change and rows go.
func TestCommNamesFollowRows(t *testing.T) {
	before := commNames.live()
	tb := New(Options{})
	for i := range 100 {
		ev := move(10, uint64(i+1), tcp.Close, tcp.SynSent)
		ev.Owner = tracer.Process{PID: uint32(i), Comm: fmt.Sprintf("client-%d", i%10)}
		tb.Apply(ev)
	}
	if got := commNames.live() - before; got != 10 {
		t.Fatalf("%d names live for 10 owners", got)
	}
	for i := range 100 {
		tb.Apply(move(20, uint64(i+1), tcp.SynSent, tcp.Close))
	}
	if tb.Len() != 0 {
		t.Fatalf("%d rows left", tb.Len())
	}
	if got := commNames.live() - before; got != 0 {
		t.Fatalf("%d names still live with no rows", got)
	}
}

// live counts the names held.
func (c *commRegistry) live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}
