// Package scenarios holds the checked-in scenario files (YAML, see
// docs/scenarios.md), embedded so `lastmile demo --scenario NAME` works from
// the binary alone.
package scenarios

import (
	"embed"
	"fmt"
	"os"
	"sort"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Names lists the embedded scenarios.
func Names() []string {
	ents, _ := files.ReadDir(".")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// Read returns a scenario by name (an embedded one) or by path (a file).
func Read(nameOrPath string) ([]byte, error) {
	if b, err := files.ReadFile(nameOrPath + ".yaml"); err == nil {
		return b, nil
	}
	b, err := os.ReadFile(nameOrPath)
	if err != nil {
		return nil, fmt.Errorf("scenario %q: neither a built-in scenario (%s) nor a readable file: %w",
			nameOrPath, strings.Join(Names(), ", "), err)
	}
	return b, nil
}
