package schemas

import (
	"os"
	"strings"
	"testing"
)

func TestRollupMigrationUpToDate(t *testing.T) {
	got, err := os.ReadFile("migrations/0009_qoe_rollups_fps_latency.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != RollupMigration() {
		t.Fatal("migrations/0009_qoe_rollups_fps_latency.sql differs from schemas/rollup.go: a released migration must not change; " +
			"add a new migration file for the change, or run `go generate ./schemas` if 0009 is unreleased")
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var m *Migration
	for i := range ms {
		if ms[i].Version == RollupsVersion {
			m = &ms[i]
		}
	}
	if m == nil {
		t.Fatalf("migration %04d missing: %+v", RollupsVersion, ms)
	}
	// Four views and four tables dropped, then each family's two tables,
	// two views and backfill; every statement idempotent.
	if n := len(m.Statements); n != 18 {
		t.Errorf("%04d has %d statements, want 18", RollupsVersion, n)
	}
	for _, st := range m.Statements {
		if !strings.Contains(st, "IF NOT EXISTS") && !strings.Contains(st, ") = 0") &&
			!strings.Contains(st, "IF EXISTS") && !strings.HasPrefix(st, "CREATE OR REPLACE") {
			t.Errorf("statement is not idempotent:\n%s", st)
		}
	}
}

// Every rollup key is a catalog dimension, and every measure names a kind
// the sums rollup keeps.
func TestRollupDefinitions(t *testing.T) {
	for _, d := range MetricDims {
		i, ok := EventColumnIndex[d.Name]
		if !ok {
			t.Errorf("rollup dimension %s is not a column", d.Name)
			continue
		}
		if f := EventColumns[i]; f.Kind != KindDim && d.SQL == "" && d.Name != "room_id" && d.Name != "stream_id" {
			t.Errorf("rollup dimension %s is a %s, not a dimension", d.Name, f.Kind)
		}
		if d.Kind != "" && Lookup(d.Kind).index[d.Name] == 0 {
			t.Errorf("rollup dimension %s is not a field of %s", d.Name, d.Kind)
		}
	}
	kinds := map[string]bool{}
	for _, k := range RollupKinds {
		if Lookup(k) == nil {
			t.Errorf("rollup kind %s is not a log_type", k)
		}
		kinds[k] = true
	}
	for _, m := range Measures {
		if m.Kind != "" && !kinds[m.Kind] {
			t.Errorf("measure %s reads %s, which qoe_1m does not keep", m.Name, m.Kind)
		}
	}
	for _, d := range append(FirstFrameTimes, Latency) {
		if _, ok := EventColumnIndex[d.Field]; !ok || !kinds[d.Kind] {
			t.Errorf("distribution %s.%s is not a rolled-up field", d.Kind, d.Field)
		}
	}
}
