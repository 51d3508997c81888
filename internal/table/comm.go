package table

import (
	"slices"
	"sync"
	"sync/atomic"
)

// commNames interns the owners' command names. A row holds a 32-bit id,
// not a string: with no pointer in a row, the garbage collector never scans
// the row chunks, and at 100 000 rows that scanning was a quarter of the
// start-up. An id is counted by the rows holding it and reused once free,
// so the names kept are those of live rows.
var commNames = newCommRegistry()

type commRegistry struct {
	mu    sync.Mutex
	names atomic.Pointer[[]string] // by id, read without the lock; id 0 is ""
	refs  []uint32
	ids   map[string]uint32
	free  []uint32
}

func newCommRegistry() *commRegistry {
	c := &commRegistry{refs: []uint32{0}, ids: map[string]uint32{}}
	c.names.Store(&[]string{""})
	return c
}

// name returns the name of id, "" for 0.
func (c *commRegistry) name(id uint32) string { return (*c.names.Load())[id] }

// acquire returns name's id, counting one more holder.
func (c *commRegistry) acquire(name string) uint32 {
	if name == "" {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.ids[name]; ok {
		c.refs[id]++
		return id
	}
	// A new name is rare (a few hundred on a host): copy the names so that
	// readers never see a slice being written.
	names := slices.Clone(*c.names.Load())
	var id uint32
	if n := len(c.free); n > 0 {
		id, c.free = c.free[n-1], c.free[:n-1]
		names[id] = name
	} else {
		id = uint32(len(names))
		names = append(names, name)
		c.refs = append(c.refs, 0)
	}
	c.refs[id] = 1
	c.ids[name] = id
	c.names.Store(&names)
	return id
}

// release drops one holder of id; the last one frees it.
func (c *commRegistry) release(id uint32) {
	if id == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs[id]--; c.refs[id] == 0 {
		delete(c.ids, (*c.names.Load())[id])
		c.free = append(c.free, id)
	}
}
