package table

import "github.com/tcpstat/tcpstat/internal/tracer"

// Before Linux 5.12 tracing programs get no socket cookies: the tracer
// gives events synthetic ids, and rows are keyed by them until a dump
// lists the socket under its real cookie. The dump and the events are
// matched by Key; from then on the synthetic id is an alias of the cookie.

// resolveAlias returns e with its synthetic id replaced by the cookie the
// id's row was adopted under, or e itself.
func (t *Table) resolveAlias(e *tracer.Event) *tracer.Event {
	if !e.Synthetic {
		return e
	}
	real, ok := t.aliases[e.Cookie]
	if !ok {
		return e
	}
	ev := *e
	ev.Cookie = real
	return &ev
}

// syntheticRows finds the rows keyed by synthetic ids, by Key.
func (t *Table) syntheticRows() map[Key]uint64 {
	m := map[Key]uint64{}
	for i := range t.rows.n {
		if r := t.rows.at(i); r.has(flagSynthetic) {
			m[r.Key()] = r.cookie
		}
	}
	return m
}

// adopt gives the synthetic-id row with Key k the real cookie a dump
// lists it under; later events under the synthetic id go to it.
func (t *Table) adopt(synthetic map[Key]uint64, k Key, cookie uint64) *Row {
	id, ok := synthetic[k]
	if !ok {
		return nil
	}
	delete(synthetic, k)
	r := t.rows.rekey(id, cookie)
	r.set(flagSynthetic, false)
	t.aliases[id] = cookie
	t.stats.Adopted++
	return r
}

// pruneAliases forgets the aliases of cookies that have neither a row nor
// a recent close.
func (t *Table) pruneAliases() {
	for id, real := range t.aliases {
		if _, closing := t.tombs[real]; !closing && t.rows.lookup(real) == nil {
			delete(t.aliases, id)
		}
	}
}
