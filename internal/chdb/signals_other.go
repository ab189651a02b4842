//go:build !(linux && (amd64 || arm64))

package chdb

// sigState is empty where restoring dispositions is not implemented; there
// chDB's signal handling wins over Go's.
type sigState struct{}

func saveSignals(*sigState)    {}
func restoreSignals(*sigState) {}
