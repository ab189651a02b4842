package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Issue 16, defect 1: one accepted event whose unknown field has a name that
// is not UTF-8 panicked the processor (a metric label) about a second after
// the collector answered 200, and every restart died on the same message.

// poisonJSON is a valid heartbeat but for an unknown field named "\xff\xfe".
func poisonJSON(id, device string, ts int64) string {
	return fmt.Sprintf(`{"event_id":%q,"app_id":"%s","log_type":"heartbeat","ts":%d,"device_id":"%s","session_id":"s-%s","buffer_ms":5,"`+"\xff\xfe"+`":1}`,
		id, testAppID, ts, device, device)
}

func goodJSON(id, device string, ts int64) string {
	return fmt.Sprintf(`{"event_id":%q,"app_id":"%s","log_type":"heartbeat","ts":%d,"device_id":"%s","session_id":"s-%s","buffer_ms":7}`,
		id, testAppID, ts, device, device)
}

// alive fails the test with the process's log when it has died.
func alive(t *testing.T, p *proc) {
	t.Helper()
	if !p.running() {
		t.Fatalf("lastmile died: %s", logTail(p))
	}
	resp, err := client.Get("http://" + p.HTTP + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
}

// waitStored waits until q counts want rows, failing at once if the process
// dies meanwhile.
func waitStored(t *testing.T, p *proc, q string, want int64) {
	t.Helper()
	waitFor(t, 60*time.Second, q, func() (bool, string) {
		if !p.running() {
			t.Fatalf("lastmile died while waiting for %s: %s", q, logTail(p))
		}
		rows, err := p.sql(q)
		if err != nil || len(rows) != 1 {
			return false, fmt.Sprint(rows, err)
		}
		for _, v := range rows[0] {
			return toInt(t, v) == want, fmt.Sprint(v)
		}
		return false, "no value"
	})
}

// TestPoisonPillViaCollector posts the poison pill with the test key: the
// collector accepts it, the processor stores it (it is valid but for the
// dropped field), counts the field under a cleaned name, stays up, and
// stores the next event too.
func TestPoisonPillViaCollector(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	now := time.Now().UnixMilli()

	r, err := p.post([]byte(poisonJSON("poison-1", "poison-dev", now)), false, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.Accepted != 1 || len(r.Rejected) != 0 {
		t.Fatalf("poison pill answered %d accepted=%d rejected=%v, want 200, 1 accepted", r.Status, r.Accepted, r.Rejected)
	}
	waitStored(t, p, "SELECT count() AS n FROM heartbeat WHERE device_id = 'poison-dev'", 1)
	// On affb068 the process was dead by now; give a late crash its chance.
	time.Sleep(2 * time.Second)
	alive(t, p)

	r, err = p.post([]byte(goodJSON("after-1", "after-dev", now+1)), false, testKey)
	if err != nil || r.Status != 200 || r.Accepted != 1 {
		t.Fatalf("good event after the poison pill: %+v %v", r, err)
	}
	waitStored(t, p, "SELECT count() AS n FROM heartbeat WHERE device_id = 'after-dev'", 1)
	alive(t, p)
	if n := p.sqlInt(t, "SELECT toInt64(buffer_ms) AS n FROM heartbeat WHERE device_id = 'poison-dev'"); n != 5 {
		t.Errorf("poison pill stored with buffer_ms %d, want 5", n)
	}
	if v := p.metric(t, "lastmile_processor_unknown_fields_dropped_total", `field="`+"\uFFFD"+`"`, `log_type="heartbeat"`); v != 1 {
		t.Errorf("unknown field counted %v times under %q, want 1", v, "\uFFFD")
	}
	if v := p.metric(t, "lastmile_processor_message_panics_total"); v != 0 {
		t.Errorf("%v messages panicked", v)
	}
}

// kcatPath returns kcat, or skips (fails in CI) when it is not installed.
func kcatPath(t *testing.T) string {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not found; `make test` installs it (scripts/install-system-deps.sh)")
		}
		t.Skip("kcat not installed; `make system-deps` installs it")
	}
	return kcat
}

// kcatProduce writes one message per line to topic on the embedded broker.
func kcatProduce(t *testing.T, kcat, broker, topic string, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if strings.ContainsRune(m, '\n') {
			t.Fatalf("message %q spans lines", m)
		}
	}
	cmd := exec.Command(kcat, "-P", "-b", broker, "-t", topic)
	cmd.Stdin = bytes.NewReader([]byte(strings.Join(msgs, "\n") + "\n"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P -t %s: %v\n%s", topic, err, out)
	}
}

// TestPoisonPillViaKafka produces hostile messages straight to the embedded
// broker with kcat, past the collector: the poison pill, a message that is
// not JSON, one with a string value that is not UTF-8, and on the dead-letter
// topic a record that is not JSON and one with a received_at far in the
// future. The processor stays up, refuses what it must with reasons, and
// stores the rest.
func TestPoisonPillViaKafka(t *testing.T) {
	kcat := kcatPath(t)
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	now := time.Now().UnixMilli()

	kcatProduce(t, kcat, p.Kafka, schemas.TopicOf("heartbeat"),
		poisonJSON("kcat-poison", "kcat-poison", now),
		`{"log_type":"heartbeat","ts":`+fmt.Sprint(now)+`,"device_id":"kcat-notjson"`,
		goodJSON("kcat-badutf8", "kcat-badutf8-\xff", now),
		goodJSON("kcat-good", "kcat-good", now+1),
	)
	kcatProduce(t, kcat, p.Kafka, schemas.RejectedTopic,
		"kcat-dead-letter \xff not json",
		`{"received_at":99999999999999,"app_id":"kcat","code":"forged","reason":"from kcat","raw":"x","event_index":-1,"event_id":"kcat-forged"}`,
	)

	waitStored(t, p, "SELECT count() AS n FROM heartbeat WHERE device_id IN ('kcat-poison', 'kcat-good')", 2)
	waitStored(t, p, "SELECT count() AS n FROM rejected WHERE stage = 'processor' AND log_type = 'heartbeat'", 2)
	waitStored(t, p, "SELECT count() AS n FROM rejected WHERE raw LIKE 'kcat-dead-letter%' OR event_id = 'kcat-forged'", 2)
	time.Sleep(2 * time.Second)
	alive(t, p)

	rows, err := p.sql("SELECT code, field, reason, device_id FROM rejected WHERE stage = 'processor' AND log_type = 'heartbeat' ORDER BY field")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(rows)
	if len(rows) != 2 ||
		rows[0]["code"] != schemas.ReasonInvalidJSON || rows[0]["field"] != "" || !strings.Contains(fmt.Sprint(rows[0]["reason"]), "invalid JSON") ||
		rows[1]["code"] != schemas.ReasonInvalidJSON || rows[1]["field"] != "device_id" || !strings.Contains(fmt.Sprint(rows[1]["reason"]), "not valid UTF-8") ||
		rows[1]["device_id"] != "kcat-badutf8-\uFFFD" {
		t.Errorf("processor's rejects: %s; want invalid_json (not JSON) and invalid_json on device_id (not UTF-8, kept cleaned)", got)
	}
	if n := p.sqlInt(t, "SELECT count() AS n FROM heartbeat WHERE event_id = 'kcat-badutf8'"); n != 0 {
		t.Errorf("the event with a string that is not UTF-8 was stored %d times", n)
	}
	rows, err = p.sql("SELECT code, raw, toUnixTimestamp64Milli(received_at) AS at FROM rejected WHERE raw LIKE 'kcat-dead-letter%' OR event_id = 'kcat-forged' ORDER BY code")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["code"] != "forged" || rows[1]["code"] != schemas.ReasonInvalidJSON ||
		rows[1]["raw"] != "kcat-dead-letter \uFFFD not json" {
		t.Errorf("dead-letter records from kcat: %v", rows)
	}
	for _, r := range rows {
		if at := toInt(t, r["at"]); at < now-60_000 || at > time.Now().UnixMilli()+60_000 {
			t.Errorf("dead-letter record %v stored with received_at %d, want about now", r["code"], at)
		}
	}
	if v := p.metric(t, "lastmile_processor_unknown_fields_dropped_total", `field="`+"\uFFFD"+`"`); v != 1 {
		t.Errorf("unknown field counted %v times, want 1", v)
	}
}

// TestManyDaysOneBatch: events of 150 different days in one batch, produced
// straight to the broker with a retention that admits them. ClickHouse's
// default refuses an insert over 100 partitions (the tables are partitioned
// by day), so on affb068 the batch failed on every retry and ingest stalled
// for good; the processor's window bounds the days of a batch instead.
func TestManyDaysOneBatch(t *testing.T) {
	kcat := kcatPath(t)
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0", "--retention-days", "400")
	now := time.Now().UnixMilli()
	var lines []string
	for d := 0; d < 150; d++ {
		lines = append(lines, goodJSON(fmt.Sprintf("day-%d", d), fmt.Sprintf("day-dev-%d", d), now-int64(d)*24*3600*1000))
	}
	kcatProduce(t, kcat, p.Kafka, schemas.TopicOf("heartbeat"), lines...)
	waitStored(t, p, "SELECT count() AS n FROM heartbeat WHERE startsWith(event_id, 'day-')", 150)
	if n := p.sqlInt(t, "SELECT uniqExact(toDate(ts)) AS n FROM heartbeat WHERE startsWith(event_id, 'day-')"); n < 150 {
		t.Errorf("%d days stored, want 150", n)
	}
	alive(t, p)
}
