// Command gen writes the files derived from the event catalog: the JSON Schema
// for SDK authors, the first ClickHouse migration and the QoE rollups'
// migration. Run `go generate ./schemas`.
package main

import (
	"fmt"
	"os"

	"github.com/lastmile-qoe/lastmile/schemas"
)

func main() {
	// go generate runs in the package directory (schemas/).
	for path, body := range map[string][]byte{
		"events.schema.json":                          schemas.JSONSchema(),
		"migrations/0001_init.sql":                    []byte(schemas.InitialMigration()),
		"migrations/0009_qoe_rollups_fps_latency.sql": []byte(schemas.RollupMigration()),
		"migrations/0011_edge_cmcd.sql":               []byte(schemas.EdgeCMCDMigration()),
		"migrations/0012_request.sql":                 []byte(schemas.RequestMigration()),
	} {
		if err := os.WriteFile(path, body, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}
