package schemas

import (
	"encoding/json"
)

// JSONSchema renders the catalog as a JSON Schema (draft 2020-12) for SDK
// authors: one definition per log_type, selected by its log_type constant. The
// checked-in schemas/events.schema.json must equal it (a test checks).
func JSONSchema() []byte {
	defs := map[string]any{}
	var oneOf []any
	for i := range Catalog {
		lt := &Catalog[i]
		props := map[string]any{}
		var required []string
		for _, f := range append(append([]Field{}, Common...), lt.Fields...) {
			p := fieldSchema(&f)
			if f.Name == "log_type" {
				p = map[string]any{"const": lt.Name, "description": f.Doc}
			}
			props[f.Name] = p
			if f.Required {
				required = append(required, f.Name)
			}
		}
		for _, id := range lt.RequiredIDs() {
			required = append(required, id)
		}
		defs[lt.Name] = map[string]any{
			"type":        "object",
			"description": lt.Doc + " (" + lt.Source + " event)",
			"properties":  props,
			"required":    required,
			// Unknown fields are accepted and dropped (counted in the
			// processor's metrics), so old collectors accept new SDKs.
			"additionalProperties": true,
		}
		oneOf = append(oneOf, map[string]any{"$ref": "#/$defs/" + lt.Name})
	}
	doc := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/lastmile-qoe/lastmile/schemas/events.schema.json",
		"title":       "lastmile event",
		"description": "One log event as posted to POST /v1/events. Generated from schemas/catalog.go; do not edit.",
		"oneOf":       oneOf,
		"$defs":       defs,
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // only plain maps and slices: cannot fail
	}
	return append(out, '\n')
}

func fieldSchema(f *Field) map[string]any {
	p := map[string]any{}
	if f.Doc != "" {
		p["description"] = f.Doc
	}
	if f.Unit != "" {
		p["x-unit"] = f.Unit
	}
	switch f.Kind {
	case KindString, KindDim:
		p["type"] = "string"
		max := f.MaxLen
		if max == 0 {
			max = DefaultMaxLen
		}
		p["maxLength"] = max
		if len(f.Enum) > 0 {
			p["enum"] = f.Enum
		}
	case KindInt:
		p["type"] = "integer"
	case KindFloat:
		p["type"] = "number"
	case KindBool:
		p["type"] = "boolean"
	case KindTime:
		p["type"] = "integer"
		p["description"] = f.Doc
		p["minimum"] = 0
	}
	if f.HasRange() {
		p["minimum"] = f.Min
		p["maximum"] = f.Max
	}
	if !f.Required && f.Nullable() {
		p["type"] = []any{p["type"], "null"}
	}
	return p
}
