package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Records of the rejected table (the dead-letter path) are stored exactly
// once too: a client's retry of a request with malformed events, and the
// processor's own rejects across kill -9.

// rejSentinel posts one good and one malformed event tagged tag and waits
// until both are stored: every topic has one partition, so what was posted
// before them has then been processed.
func rejSentinel(t *testing.T, p *proc, tag string) {
	t.Helper()
	now := time.Now().UnixMilli()
	body := goodJSON("sentinel-"+tag, "sentinel-"+tag, now) + "\n" +
		fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"sentinel-%s","session_id":"s","buffer_ms":-1}`, now, tag) + "\n"
	r, err := p.post([]byte(body), false, testKey)
	if err != nil || r.Status != 200 || r.Accepted != 1 || len(r.Rejected) != 1 {
		t.Fatalf("sentinel %s: %+v, %v", tag, r, err)
	}
	waitStored(t, p, "SELECT count() AS n FROM events WHERE event_id = 'sentinel-"+tag+"'", 1)
	waitStored(t, p, "SELECT count() AS n FROM rejected WHERE position(raw, 'sentinel-"+tag+"') > 0", 1)
}

// TestRejectedOnceAfterRetry: a request with 3 malformed events (2 of them
// identical) and 2 good ones, answered 200, posted again after a SIGTERM
// restart and again after a kill -9: 3 rejected rows (no FINAL) and 2
// events. Before, each retry added 3 rejected rows (the processor did not
// deduplicate the dead-letter topic, and the table's key has received_at).
func TestRejectedOnceAfterRetry(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--kafka-listen", "127.0.0.1:0", "--listen", freePort(t)}
	p := start(t, "run", data, args...)
	now := time.Now().UnixMilli()
	bad := fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"rjonce-dev","session_id":"s","buffer_ms":-4}`, now)
	body := strings.Join([]string{
		goodJSON("rjonce-good-1", "rjonce-good", now),
		bad,
		fmt.Sprintf(`{"log_type":"no_such_type","ts":%d,"device_id":"rjonce-dev"}`, now),
		goodJSON("rjonce-good-2", "rjonce-good", now+1),
		bad,
	}, "\n") + "\n"
	const rejQ = "SELECT count() AS n FROM rejected WHERE position(raw, 'rjonce-dev') > 0"
	const evQ = "SELECT count() AS n FROM events WHERE startsWith(event_id, 'rjonce-good-')"
	post := func(p *proc, what string) {
		t.Helper()
		r, err := p.post([]byte(body), false, testKey)
		if err != nil || r.Status != 200 || r.Accepted != 2 || len(r.Rejected) != 3 {
			t.Fatalf("%s: %+v, %v; want 200, 2 accepted, 3 rejected", what, r, err)
		}
	}
	post(p, "first post")
	waitStored(t, p, rejQ, 3)
	waitStored(t, p, evQ, 2)

	for _, how := range []string{"sigterm", "kill9"} {
		if how == "sigterm" {
			p.stop()
		} else {
			p.kill()
		}
		p = start(t, "run", data, args...)
		post(p, "retry after "+how)
		rejSentinel(t, p, how)
		if n := p.sqlInt(t, rejQ); n != 3 {
			t.Errorf("after the retry following %s: %d rejected rows for the request, want 3", how, n)
		}
		if n := p.sqlInt(t, evQ); n != 2 {
			t.Errorf("after the retry following %s: %d events for the request, want 2", how, n)
		}
		if v := p.metric(t, "lastmile_processor_duplicates_dropped_total", `topic="`+schemas.RejectedTopic+`"`); v != 3 {
			t.Errorf("after %s: %v dead-letter records dropped as duplicates, want 3", how, v)
		}
	}
	if n := p.sqlInt(t, "SELECT uniqExact(event_id) AS n FROM rejected WHERE position(raw, 'rjonce-dev') > 0"); n != 3 {
		t.Errorf("%d distinct event_ids among the request's rejected rows, want 3", n)
	}
}

// TestRejectedOnceProcessorKill9: messages the processor itself rejects
// (not JSON; log_type on the wrong topic), each followed by a valid event,
// produced straight to Kafka with kcat; the process is killed with -9 at a
// different moment of each round (while the batch is being stored, or
// after) and restarted. Each reject is stored exactly once. Before, the
// dead-letter records were produced after the batch's insert: a kill in
// between lost them, as the restart skipped their messages by offset.
func TestRejectedOnceProcessorKill9(t *testing.T) {
	kcat := kcatPath(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--kafka-listen", "127.0.0.1:0", "--listen", freePort(t)}
	p := start(t, "run", data, args...)
	delays := []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond, 700 * time.Millisecond, 1200 * time.Millisecond}
	type span struct{ from, to int64 }
	produced := make([]span, len(delays)) // when each round's messages were produced, ms
	for i, d := range delays {
		now := time.Now().UnixMilli()
		produced[i].from = now
		kcatProduce(t, kcat, p.Kafka, schemas.TopicOf("heartbeat"),
			fmt.Sprintf(`{"log_type":"heartbeat","device_id":"rjk-notjson-%d"`, i),
			strings.Replace(goodJSON(fmt.Sprintf("rjk-wrongtopic-%d", i), fmt.Sprintf("rjk-wrongtopic-%d", i), now), `"log_type":"heartbeat"`, `"log_type":"stall"`, 1),
			goodJSON(fmt.Sprintf("rjk-good-%d", i), "rjk-good", now),
		)
		produced[i].to = time.Now().UnixMilli()
		time.Sleep(d)
		p.kill()
		p = start(t, "run", data, args...)
	}
	rejSentinel(t, p, "end")
	rows, err := p.sql(`SELECT raw, count() AS n, any(stage) AS stage, any(event_id) AS id,
		toInt64(extract(raw, 'rjk-[a-z]+-([0-9]+)')) AS round, min(toUnixTimestamp64Milli(received_at)) AS at
		FROM rejected WHERE position(raw, 'rjk-') > 0 GROUP BY raw ORDER BY raw`)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2*len(delays) {
		t.Errorf("%d distinct rejected messages stored, want %d: %v", len(rows), 2*len(delays), rows)
	}
	for _, r := range rows {
		if n := toInt(t, r["n"]); n != 1 || r["stage"] != "processor" || !strings.HasPrefix(fmt.Sprint(r["id"]), schemas.TopicOf("heartbeat")+":") {
			t.Errorf("rejected %q: %d rows, stage %v, event_id %v; want 1 row by the processor named by its message", r["raw"], n, r["stage"], r["id"])
		}
		// The record's time is its message's (kcat stamps it when it
		// produces), not when it was handled: the same after a replay.
		if i := toInt(t, r["round"]); i >= 0 && i < int64(len(produced)) {
			if at := toInt(t, r["at"]); at < produced[i].from || at > produced[i].to {
				t.Errorf("rejected %q: received_at %d, want the message's time, within [%d, %d]", r["raw"], at, produced[i].from, produced[i].to)
			}
		}
	}
	if n := p.sqlInt(t, "SELECT count() AS n FROM events WHERE startsWith(event_id, 'rjk-good-')"); n != int64(len(delays)) {
		t.Errorf("%d good events stored, want %d", n, len(delays))
	}
	if n := p.sqlInt(t, "SELECT count() AS n FROM events WHERE startsWith(event_id, 'rjk-wrongtopic-')"); n != 0 {
		t.Errorf("%d events of the wrong topic stored", n)
	}
}
