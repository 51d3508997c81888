package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// duckdbDir is where scripts/deps.sh installs DuckDB's Node package.
func duckdbDir(t *testing.T) string {
	t.Helper()
	testenv.SkipInMinimalGuest(t, "there is no Node.js for DuckDB")
	if _, err := exec.LookPath("node"); err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("node is missing: run scripts/deps.sh")
		}
		t.Skip("node is missing: run scripts/deps.sh as root")
	}
	dir := os.Getenv("TCPSTAT_DUCKDB_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(cache, "tcpstat-duckdb")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err != nil {
		// The same install as scripts/deps.sh.
		if out, err := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "@duckdb/node-api").CombinedOutput(); err != nil {
			t.Fatalf("install DuckDB's Node package: %v\n%s", err, out)
		}
	}
	return dir
}

// duckdb runs each named query (one number each) in DuckDB.
func duckdb(t *testing.T, queries map[string]string) map[string]float64 {
	t.Helper()
	dir := duckdbDir(t)
	const script = `const { DuckDBInstance } = require('@duckdb/node-api');
(async () => {
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const out = {};
  for (const [k, q] of Object.entries(JSON.parse(process.argv[1]))) {
    const r = await con.runAndReadAll(q);
    out[k] = Number(r.getRows()[0][0]);
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(String(e)); process.exit(1); });`
	q, _ := json.Marshal(queries)
	cmd := exec.Command("node", "-e", script, string(q))
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v: %s", err, stderr.String())
	}
	got := map[string]float64{}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("duckdb output %q: %v", out, err)
	}
	return got
}

// TestReplayParquetInDuckDB writes a recording's events and a table as of
// an instant as Parquet, and has DuckDB count them and join them.
func TestReplayParquetInDuckDB(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "r"+record.Ext)
	f, err := os.Create(rec)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 30, 3, 12, 0, 0, time.UTC)
	evs := recordtest.Churn(2000, 7)
	offset := start.UnixNano() - int64(evs[0].Time)
	w, err := record.NewWriter(f, record.Header{Host: "h1", BootID: "b1", Start: start, StartBoot: evs[0].Time, ClockOffset: offset}, 0, record.Gap{})
	if err != nil {
		t.Fatal(err)
	}
	tb := table.New(table.Options{})
	if err := w.Checkpoint(evs[0].Time, offset, record.Checkpoint{Tracing: true}, tb); err != nil {
		t.Fatal(err)
	}
	half := len(evs) / 2
	var handshakes, accepts, acceptedOpen, rowsAtHalf int
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		tb.Apply(&evs[i])
		e := &evs[i]
		if e.Old == tcp.SynSent && e.New == tcp.Established {
			handshakes++
		}
		if e.Kind == tracer.Accept {
			accepts++
		}
		if i == half {
			rowsAtHalf = tb.Len()
			for j := range tb.Len() {
				if r := tb.Row(j); r.State() != tcp.TimeWait && r.State() != tcp.FinWait2 {
					if _, ok := r.Owner(); ok {
						acceptedOpen++
					}
				}
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	at := record.Wall(evs[half].Time, offset)

	events, conns := filepath.Join(dir, "events.parquet"), filepath.Join(dir, "table.parquet")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"tcpstat", "replay", "--format", "parquet", "-o", events, rec}, &stdout, &stderr); err != nil {
		t.Fatalf("replay: %v (%s)", err, stderr.String())
	}
	if err := run(context.Background(), []string{"tcpstat", "replay", "--format", "parquet", "-o", conns, "--at", at.Format(time.RFC3339Nano), rec}, &stdout, &stderr); err != nil {
		t.Fatalf("replay --at: %v (%s)", err, stderr.String())
	}
	got := duckdb(t, map[string]string{
		"events": "SELECT count(*) FROM '" + events + "'",
		"hosts":  "SELECT count(DISTINCT host || boot_id) FROM '" + events + "'",
		"handshakes": "SELECT count(*) FROM '" + events + "' a JOIN '" + events + "' b ON a.cookie = b.cookie " +
			"WHERE a.old_state = 'CLOSE' AND a.new_state = 'SYN_SENT' AND b.old_state = 'SYN_SENT' AND b.new_state = 'ESTABLISHED' AND b.time > a.time",
		"accepts": "SELECT count(*) FROM '" + events + "' WHERE type = 'accept' AND pid IS NOT NULL",
		"rows":    "SELECT count(*) FROM '" + conns + "'",
		// Every row of the table as of the instant is a socket whose
		// events came before it.
		"rows_with_events": "SELECT count(DISTINCT t.cookie) FROM '" + conns + "' t JOIN '" + events + "' e ON t.cookie = e.cookie AND e.time <= t.at",
		"owned_open":       "SELECT count(*) FROM '" + conns + "' WHERE pid IS NOT NULL AND state NOT IN ('TIME_WAIT', 'FIN_WAIT2')",
	})
	want := map[string]float64{"events": float64(len(evs)), "hosts": 1, "handshakes": float64(handshakes), "accepts": float64(accepts),
		"rows": float64(rowsAtHalf), "rows_with_events": float64(rowsAtHalf), "owned_open": float64(acceptedOpen)}
	t.Logf("DuckDB: %v", got)
	if diff := cmp.Diff(want, got); diff != "" || rowsAtHalf == 0 {
		t.Fatalf("DuckDB's counts (-want +got):\n%s", diff)
	}
}
