package schemas

import (
	"os"
	"strings"
	"testing"
)

func TestRollupMigrationUpToDate(t *testing.T) {
	got, err := os.ReadFile("migrations/0002_qoe_rollups.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != RollupMigration() {
		t.Fatal("migrations/0002_qoe_rollups.sql differs from schemas/rollup.go: a released migration must not change; " +
			"add a new migration file for the change, or run `go generate ./schemas` if 0002 is unreleased")
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 || ms[1].Version != 2 {
		t.Fatalf("migration 0002 missing: %+v", ms)
	}
	// Five tables, five views, three backfills; every statement idempotent.
	if n := len(ms[1].Statements); n != 13 {
		t.Errorf("0002 has %d statements, want 13", n)
	}
	for _, st := range ms[1].Statements {
		if !strings.Contains(st, "IF NOT EXISTS") && !strings.Contains(st, ") = 0") {
			t.Errorf("statement is not idempotent:\n%s", st)
		}
	}
}

// Every rollup key is a catalog dimension, and every measure names a kind
// the sums rollup keeps.
func TestRollupDefinitions(t *testing.T) {
	for _, d := range RollupDims {
		if EventColumns[EventColumnIndex[d]].Kind != KindDim {
			t.Errorf("rollup dimension %s is not a dimension", d)
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
