// Command gen writes the files derived from the event catalog: the JSON Schema
// for SDK authors and the first ClickHouse migration. Run `go generate ./schemas`.
package main

import (
	"fmt"
	"os"

	"github.com/lastmile-qoe/lastmile/schemas"
)

func main() {
	// go generate runs in the package directory (schemas/).
	if err := os.WriteFile("events.schema.json", schemas.JSONSchema(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile("migrations/0001_init.sql", []byte(schemas.InitialMigration()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
