package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// An edge_access with CMCD is stored with its typed CMCD columns and its
// other keys as a map (a quoted value with a comma and an escaped quote
// included); a typed value out of its range rejects that event only, with
// the field named.
func TestEdgeAccessCMCDStored(t *testing.T) {
	r := newRig(t)
	now := time.Now().UnixMilli()
	ev := func(id, extra string) kafka.Message {
		return kafka.Message{Topic: schemas.TopicOf("edge_access"), Key: []byte("s1"), Value: []byte(fmt.Sprintf(
			`{"event_id":"%s","app_id":"cmcd","log_type":"edge_access","ts":%d,"node_id":"edge-1","session_id":"s1","stream_id":"live/room1","http_status":200%s}`, id, now, extra))}
	}
	msgs := []kafka.Message{
		ev("cm-1", `,"cmcd_bl":4400,"cmcd_br":0,"cmcd_mtp":206100,"cmcd_d":2000,"cmcd_rtp":0,"cmcd_ot":"v","cmcd_sf":"h","cmcd_st":"l","cmcd_su":true,`+
			`"cmcd_rest":"cid=room1,dl=4400,pb=(0),sn=33,sta=p,v=2,x=\"a,b \\\"c\\\"\""`),
		ev("cm-bad", `,"cmcd_bl":-5`),
	}
	if err := r.prod.Produce(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	r.waitRows(t, "SELECT count() AS n FROM edge_access WHERE app_id = 'cmcd'", 1)
	r.waitRows(t, "SELECT count() AS n FROM rejected WHERE app_id = 'cmcd'", 1)
	out, err := r.st.QueryJSON(context.Background(), `SELECT cmcd_bl, cmcd_br, cmcd_mtp, cmcd_d, cmcd_rtp, cmcd_ot, cmcd_sf, cmcd_st, cmcd_su,
		cmcd['sta'] AS sta, cmcd['pb'] AS pb, cmcd['cid'] AS cid, cmcd['x'] AS x, length(cmcd) AS keys FROM edge_access WHERE event_id = 'cm-1'`)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	want := map[string]any{"cmcd_bl": 4400.0, "cmcd_br": 0.0, "cmcd_mtp": 206100.0, "cmcd_d": 2000.0, "cmcd_rtp": 0.0,
		"cmcd_ot": "v", "cmcd_sf": "h", "cmcd_st": "l", "cmcd_su": true,
		"sta": "p", "pb": "(0)", "cid": "room1", "x": `a,b "c"`, "keys": 7.0}
	for k, w := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(w) {
			t.Errorf("%s = %#v, want %#v (row %s)", k, got[k], w, out)
		}
	}
	// A trace shows an edge request's CMCD (trace_context's document).
	if n := r.rows(t, `SELECT count() AS n FROM `+schemas.TraceContextTable+` WHERE app_id = 'cmcd' AND trace_key = 's1'
		AND JSONExtractInt(doc, 'cmcd_bl') = 4400 AND JSONExtractInt(doc, 'cmcd_mtp') = 206100 AND JSONExtractString(doc, 'cmcd_sf') = 'h'
		AND position(JSONExtractString(doc, 'cmcd_rest'), 'sta=p') > 0`); n != 1 {
		out, _ := r.st.Query(context.Background(), "SELECT doc FROM "+schemas.TraceContextTable+" WHERE app_id = 'cmcd'", "TSV")
		t.Errorf("trace_context documents lack the CMCD columns: %s", out)
	}
	if n := r.rows(t, "SELECT count() AS n FROM rejected WHERE app_id = 'cmcd' AND position(reason, 'cmcd_bl') > 0"); n != 1 {
		out, _ := r.st.Query(context.Background(), "SELECT * FROM rejected WHERE app_id = 'cmcd'", "JSONEachRow")
		t.Errorf("the out-of-range cmcd_bl was not rejected naming the field: %s", out)
	}
}
