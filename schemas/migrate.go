package schemas

import (
	"context"
	"embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

//go:generate go run ./gen

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned step of the ClickHouse schema.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations returns the checked-in migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := migrationFS.ReadDir("migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		body, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, Statements: splitStatements(string(body))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

func splitStatements(sql string) []string {
	var out []string
	for _, s := range strings.Split(sql, ";\n") {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "--") {
				continue
			}
			lines = append(lines, l)
		}
		if len(lines) > 0 {
			out = append(out, strings.Join(lines, "\n"))
		}
	}
	return out
}

// Execer is what applying migrations needs from a store.
type Execer interface {
	Exec(ctx context.Context, sql string) error
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
}

// Migrate applies every migration not yet recorded in schema_migrations. Each
// statement is idempotent (IF NOT EXISTS), so a crash between a statement and
// its record is harmless: the next start runs it again.
func Migrate(ctx context.Context, db Execer, ttlDays int) (applied []string, err error) {
	if ttlDays <= 0 {
		return nil, fmt.Errorf("migrate: retention must be at least 1 day, got %d", ttlDays)
	}
	if err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations
(version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3))
ENGINE = ReplacingMergeTree ORDER BY version`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	out, err := db.QueryJSON(ctx, "SELECT version FROM schema_migrations FINAL")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	done := map[int]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if _, v, ok := strings.Cut(line, ":"); ok {
			n, _ := strconv.Atoi(strings.Trim(v, "}\" "))
			done[n] = true
		}
	}
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	ttl := strconv.Itoa(ttlDays)
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		for i, st := range m.Statements {
			if err := db.Exec(ctx, strings.ReplaceAll(st, TTLPlaceholder, ttl)); err != nil {
				return applied, fmt.Errorf("migrate %s statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := db.Exec(ctx, fmt.Sprintf("INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')", m.Version, m.Name)); err != nil {
			return applied, fmt.Errorf("migrate: record %s: %w", m.Name, err)
		}
		applied = append(applied, m.Name)
	}
	return applied, nil
}
