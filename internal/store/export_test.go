package store

// Hooks for the offline tests of the ClickHouse backend in package store_test
// (which cannot be internal: it imports storetest, which imports store).
var (
	ArrowToColumn   = arrowToColumn
	AppendJSONValue = appendJSONValue
)
