package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// memProducer keeps what it is given, copied: the collector reuses buffers.
type memProducer struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (m *memProducer) Produce(_ context.Context, msgs []kafka.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range msgs {
		m.msgs = append(m.msgs, kafka.Message{Topic: k.Topic, Key: bytes.Clone(k.Key), Value: bytes.Clone(k.Value)})
	}
	return nil
}

// seedEvent is a valid event of lt as an SDK or a media/ component sends it,
// every catalog field set.
func seedEvent(lt *schemas.LogType, ts int64, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"log_type":%q,"ts":%d`, lt.Name, ts)
	for _, f := range lt.Columns() {
		switch f.Name {
		case "log_type", "ts", "app_id", "received_at", "sample_rate", "event_id":
			continue
		case "code":
			b.WriteString(`,"code":0`)
			continue
		}
		fmt.Fprintf(&b, `,%q:`, f.Name)
		switch f.Kind {
		case schemas.KindString, schemas.KindDim:
			v := f.Name + "-" + strconv.Itoa(n)
			if len(f.Enum) > 0 {
				v = f.Enum[n%len(f.Enum)]
			}
			fmt.Fprintf(&b, "%q", v)
		case schemas.KindInt:
			b.WriteString(strconv.Itoa(int(min(max(f.Min, float64(n+1)), f.Max))))
		case schemas.KindFloat:
			b.WriteString("0.5")
		case schemas.KindBool:
			b.WriteString(strconv.FormatBool(n%2 == 0))
		case schemas.KindTime:
			b.WriteString(strconv.FormatInt(ts, 10))
		}
	}
	b.WriteByte('}')
	return b.String()
}

// Body modes of FuzzCollectorBody (mode % 6).
var fuzzModes = []struct {
	gzip     bool   // compress the input before sending
	encoding string // Content-Encoding header
	ctype    string // Content-Type header
}{
	{false, "", ""},
	{true, "gzip", ""},
	{true, " X-GZIP ", "application/json"},
	{false, "gzip", ""}, // the input itself as a gzip stream
	{false, "", "application/x-ndjson"},
	{true, "identity, GZip", "application/x-ndjson; charset=utf-8"},
}

const (
	fuzzMaxBody   = 64 << 10
	fuzzMaxEvents = 64
)

// FuzzCollectorBody: the collector's body path — decoding, format detection,
// splitting, validation, sampling, encoding — never panics, and its answer
// accounts for every event the splitter found: accepted + sampled_out +
// rejected equals their number, each rejected by its own index with its own
// dead-letter record; every produced event parses and cleans again as the
// processor will clean it, on its log_type's topic.
func FuzzCollectorBody(f *testing.F) {
	ts := time.Now().UnixMilli()
	var evs []string
	for i := range schemas.Catalog {
		evs = append(evs, seedEvent(&schemas.Catalog[i], ts, i))
	}
	hb := evs[0]
	for i, lt := range schemas.Catalog {
		if lt.Name == "heartbeat" {
			hb = evs[i]
		}
	}
	// Every log_type once, in both formats; the rest small, as the
	// fuzzer's minimizing time grows with input size.
	f.Add([]byte("["+strings.Join(evs, ",")+"]"), uint8(0))
	f.Add([]byte(strings.Join(evs, "\n")+"\n"), uint8(1))
	seeds := []string{
		"[" + strings.Join(evs[:3], ",") + "]",
		strings.Join(evs[3:6], "\n") + "\n",
		"[\n  " + strings.Join(evs[:3], ",\n  ") + "\n]\n",
		"[1]\n" + hb + "\n" + hb,
		`"x"` + "\r\n" + hb + "\r\n\r\n123\ngarbage\n" + hb,
		"[1,\n" + hb,
		"[" + hb + "," + hb,
		hb + "\n" + strings.Replace(hb, `"ts":`, `"ts":"abc","ts":`, 1),
		strings.Replace(hb, `"heartbeat"`, `"heartbeat","log_type":"stall"`, 1),
		`{"log_type":"nope"}` + "\n" + `{"log_type":"nope"}`,
		`{"log_type":"heartbeat","a\u0070p_id":"x","event_id":"e1","event_id":"e2","ts":` + strconv.FormatInt(ts, 10) + `,"device_id":"d","session_id":"s"}`,
		"\x1f\x8b\x08\x00",
		"",
		" \n ",
	}
	for _, s := range seeds {
		for mode := range fuzzModes {
			f.Add([]byte(s), uint8(mode))
		}
	}
	var gzSeed bytes.Buffer
	zw := gzip.NewWriter(&gzSeed)
	zw.Write([]byte(strings.Join(evs, "\n")))
	zw.Close()
	f.Add(gzSeed.Bytes(), uint8(3))

	sc := sampling.DefaultConfig()
	sc.Rates["heartbeat"] = 0.5
	sampler := sampling.New(sc)
	metrics := NewMetrics(prometheus.NewRegistry())

	f.Fuzz(func(t *testing.T, in []byte, mode uint8) {
		m := fuzzModes[int(mode)%len(fuzzModes)]
		prod := &memProducer{}
		c := New(Config{AppKeys: map[string]string{"k1": "app1"}, MaxBodyBytes: fuzzMaxBody, MaxEvents: fuzzMaxEvents},
			sampler, prod, metrics, log.NewNopLogger())
		sent, body := in, in // body: what the collector should see after decoding
		if m.gzip {
			var b bytes.Buffer
			w := gzip.NewWriter(&b)
			w.Write(in)
			w.Close()
			sent = b.Bytes()
		} else if m.encoding != "" {
			zr, err := gzip.NewReader(bytes.NewReader(in))
			if err == nil {
				body, err = io.ReadAll(io.LimitReader(zr, fuzzMaxBody+1))
			}
			if err != nil {
				body = nil
			}
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(sent))
		req.Header.Set("X-Lastmile-Key", "k1")
		if m.encoding != "" {
			req.Header.Set("Content-Encoding", m.encoding)
		}
		if m.ctype != "" {
			req.Header.Set("Content-Type", m.ctype)
		}
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, req)

		spans, splitErr := splitBody(nil, body, m.ctype, fuzzMaxEvents)
		checkSpans(t, body, spans)
		var events, rejected []kafka.Message
		for _, k := range prod.msgs {
			if k.Topic == schemas.RejectedTopic {
				rejected = append(rejected, k)
			} else {
				events = append(events, k)
			}
		}
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			// Refused whole: nothing but, at most, the request's own
			// dead-letter record.
			if len(events) > 0 || len(rejected) > 1 {
				t.Fatalf("%d refused, yet %d events and %d rejected records produced", rec.Code, len(events), len(rejected))
			}
			if rec.Code == http.StatusRequestEntityTooLarge && len(sent) <= fuzzMaxBody && len(body) <= fuzzMaxBody && !errors.Is(splitErr, errTooManyEvents) {
				t.Fatalf("413 for %d bytes, %d events: %s", len(body), len(spans), rec.Body)
			}
			if rec.Code == http.StatusBadRequest && (splitErr == nil || errors.Is(splitErr, errTooManyEvents)) {
				t.Fatalf("400 for a body the splitter reads as %d events (%v): %s", len(spans), splitErr, rec.Body)
			}
			return
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}

		if splitErr != nil {
			t.Fatalf("200 for a body the splitter refuses (%v)", splitErr)
		}
		var resp Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %q: %v", rec.Body, err)
		}
		if got := resp.Accepted + resp.SampledOut + len(resp.Rejected); got != len(spans) {
			t.Fatalf("accepted %d + sampled out %d + rejected %d = %d, but the splitter found %d events",
				resp.Accepted, resp.SampledOut, len(resp.Rejected), got, len(spans))
		}
		for i, r := range resp.Rejected {
			if r.Index < 0 || r.Index >= len(spans) || (i > 0 && r.Index <= resp.Rejected[i-1].Index) || r.Code == "" {
				t.Fatalf("rejected %+v out of order or range (%d events)", resp.Rejected, len(spans))
			}
		}
		if len(events) != resp.Accepted || len(rejected) != len(resp.Rejected) {
			t.Fatalf("produced %d events and %d rejected records for %d accepted, %d rejected",
				len(events), len(rejected), resp.Accepted, len(resp.Rejected))
		}
		ids := map[string]bool{}
		for i, k := range rejected {
			var rr schemas.RejectedRecord
			if err := json.Unmarshal(k.Value, &rr); err != nil {
				t.Fatalf("rejected record %q: %v", k.Value, err)
			}
			want := resp.Rejected[i]
			if rr.EventIndex != want.Index || rr.Code != want.Code || rr.RequestID != resp.RequestID || rr.AppID != "app1" {
				t.Fatalf("rejected record %+v for answer %+v", rr, want)
			}
			// Raw as JSON can carry it: invalid UTF-8 becomes U+FFFD.
			raw := body[spans[want.Index][0]:spans[want.Index][1]]
			var wantRaw string
			js, _ := json.Marshal(string(raw))
			json.Unmarshal(js, &wantRaw)
			if len(raw) <= DefaultMaxRawRejected && rr.Raw != wantRaw {
				t.Fatalf("rejected record raw %q, event %q", rr.Raw, raw)
			}
			if ids[rr.EventID] {
				t.Fatalf("two rejected records share event_id %s", rr.EventID)
			}
			ids[rr.EventID] = true
		}
		cl := schemas.Cleaner{MaxPast: schemas.DefaultMaxPast + time.Hour, MaxFuture: schemas.DefaultMaxFuture + time.Hour}
		var ev schemas.Event
		for _, k := range events {
			fields, err := flatjson.ParseObject(nil, k.Value)
			if err != nil {
				t.Fatalf("produced event does not parse: %v\n%s", err, k.Value)
			}
			if rej := cl.Clean(fields, &ev); rej != nil {
				t.Fatalf("produced event the processor would refuse: %v\n%s", rej, k.Value)
			}
			if schemas.TopicOf(ev.Type.Name) != k.Topic || ev.Str(schemas.ColAppID) != "app1" || len(ev.Vals[schemas.ColEventID].S) == 0 {
				t.Fatalf("produced event on %s, app %q, event_id %q: %s", k.Topic, ev.Str(schemas.ColAppID), ev.Vals[schemas.ColEventID].S, k.Value)
			}
		}
	})
}

// checkSpans: the splitter's spans are in order, inside the body, without
// overlap, and neither blank nor padded with JSON whitespace.
func checkSpans(t *testing.T, body []byte, spans [][2]int) {
	prev := 0
	for _, sp := range spans {
		if sp[0] < prev || sp[1] <= sp[0] || sp[1] > len(body) {
			t.Fatalf("span %v after %d in a %d-byte body", sp, prev, len(body))
		}
		if isJSONSpace(body[sp[0]]) || isJSONSpace(body[sp[1]-1]) {
			t.Fatalf("span %v %q is padded", sp, body[sp[0]:sp[1]])
		}
		prev = sp[1]
	}
}
