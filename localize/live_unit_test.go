package localize

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSameCohort(t *testing.T) {
	lp := DefaultLivePlan
	node := map[string]string{"node_id": "edge-b-south-1", "cdn": "cdn-b", "region": "south"}
	for _, c := range []struct {
		want, got   map[string]string
		same, exact bool
	}{
		{node, node, true, true},
		// a node label found as its CDN and region, and the reverse
		{node, map[string]string{"cdn": "cdn-b", "region": "south"}, true, false},
		{map[string]string{"cdn": "cdn-b", "region": "south", "delay_ms": "1500"}, node, true, false},
		{map[string]string{"cdn": "cdn-b", "region": "south"}, map[string]string{"cdn": "cdn-b", "region": "south"}, true, true},
		// a stream stands for its room
		{map[string]string{"room_id": "room2", "stream_id": "live/room2", "kbps": "700"}, map[string]string{"stream_id": "live/room2"}, true, false},
		{map[string]string{"stream_id": "live/room2"}, map[string]string{"room_id": "room2", "stream_id": "live/room2"}, true, false},
		// a wrong value, a coarser or finer cohort, a different dimension
		{node, map[string]string{"node_id": "edge-a-south-1", "cdn": "cdn-a", "region": "south"}, false, false},
		{map[string]string{"cdn": "cdn-b", "region": "south"}, map[string]string{"cdn": "cdn-b"}, false, false},
		{map[string]string{"app_version": "5.2.1"}, map[string]string{"app_version": "5.2.1", "isp": "isp-c"}, false, false},
		{map[string]string{"rendition": "480p", "room_id": "room1", "stream_id": "live/room1"}, map[string]string{"rendition": "480p"}, false, false},
		{map[string]string{"isp": "isp-c"}, map[string]string{"app_version": "5.2.1"}, false, false},
		// labels with no dimension (a share of everyone) match only everyone
		{map[string]string{"share": "0.3"}, map[string]string{}, true, true},
		{map[string]string{"share": "0.3"}, map[string]string{"isp": "isp-c"}, false, false},
	} {
		same, exact := lp.SameCohort(c.want, c.got)
		if same != c.same || exact != c.exact {
			t.Errorf("SameCohort(%v, %v) = %v, %v; want %v, %v", c.want, c.got, same, exact, c.same, c.exact)
		}
	}
}

func TestOverlapGroups(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	spans := [][2]time.Time{{at(55), at(90)}, {at(10), at(45)}, {at(60), at(80)}, {at(10), at(40)}, {at(100), at(110)}}
	if got := fmt.Sprint(OverlapGroups(spans)); got != "[[1 3] [0 2] [4]]" {
		t.Errorf("OverlapGroups = %s, want [[1 3] [0 2] [4]]", got)
	}
}

func TestLiveLocalizeErrors(t *testing.T) {
	now := time.Now()
	if _, err := DefaultLivePlan.Localize(context.Background(), nil, LiveRequest{From: now, To: now}); err == nil || !strings.Contains(err.Error(), "empty range") {
		t.Errorf("empty range: %v", err)
	}
	if _, err := DefaultLivePlan.Localize(context.Background(), nil, LiveRequest{From: now.Add(-time.Minute), To: now, KPI: "stalls"}); err == nil || !strings.Contains(err.Error(), `metric="stalls": want one of start_failure`) {
		t.Errorf("bad KPI: %v", err)
	}
}

// gateReadout is a readout of two 30 s buckets whose marginals are given
// per bucket as dimension → value → {affected, views}.
func gateReadout(lp LivePlan, kpi string, buckets ...map[string]map[string]vc) *readout {
	from := time.Unix(1_800_000_000, 0)
	rd := lp.newReadout(LiveRequest{From: from, To: from.Add(time.Duration(len(buckets)) * lp.RawBucket)})
	for i, dims := range buckets {
		for j, a := range rd.attrs {
			for val, x := range dims[a] {
				rd.addMarginal(kpi, rd.buckets[i], j, val, x.v, x.c)
			}
		}
	}
	return rd
}

// TestGatePairs: a small cohort whose views end on either side of a
// bucket's edge stands out in neither bucket, but does over both.
func TestGatePairs(t *testing.T) {
	bucket := func(weak float64) map[string]map[string]vc {
		return map[string]map[string]vc{
			"cdn":     {"cdn-a": {weak, 20}},
			"network": {"weak": {weak, 4}, "4g": {0, 16}},
		}
	}
	for _, pairs := range []bool{false, true} {
		lp := DefaultLivePlan
		lp.GatePairs = pairs
		rd := gateReadout(lp, KPIRebuffering, bucket(3), bucket(2))
		lp.gateKey(KPIRebuffering, KPIRebuffering, rd)
		want := ""
		if pairs {
			want = fmt.Sprintf("map[%d:[%d] %d:[%d]]", rd.buckets[0], slices.Index(lp.Attrs, "network"), rd.buckets[1], slices.Index(lp.Attrs, "network"))
		} else {
			want = "map[]"
		}
		if got := fmt.Sprint(rd.keep[KPIRebuffering]); got != want {
			t.Errorf("GatePairs %v: flagged %s, want %s", pairs, got, want)
		}
	}
}

// TestGateOneValue: a dimension with one value in the bucket is the whole
// population; its rise against the peers' low quantile (the source
// rendition's viewers, none slow) flags nothing when the window's history
// says the whole is as usual (a real run's HLS slow starts).
func TestGateOneValue(t *testing.T) {
	lp := DefaultLivePlan
	rd := gateReadout(lp, KPIRebuffering,
		map[string]map[string]vc{
			"cdn":       {"cdn-a": {9, 17}},
			"protocol":  {"hls": {9, 17}},
			"rendition": {"360p": {2, 3}, "source": {7, 14}},
		},
		map[string]map[string]vc{
			"cdn":       {"cdn-a": {7, 20}},
			"protocol":  {"hls": {7, 20}},
			"rendition": {"360p": {2, 4}, "source": {0, 10}, "480p": {5, 6}},
		})
	lp.gateKey(KPIRebuffering, KPIRebuffering, rd)
	if got := rd.keep[KPIRebuffering]; len(got) > 0 {
		t.Errorf("flagged %v, want nothing", got)
	}
}
