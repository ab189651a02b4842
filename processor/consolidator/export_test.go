package consolidator

// Due exposes due to the table test.
func Due(c *Consolidator, d Day) (merge, tooBig bool) { return c.due(d) }
