package origin

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/rtmp"
)

type nopRep struct{}

func (nopRep) Log(report.Event) {}

// TestSetLostHoldsTheStreamLost: a lost room's relay is cut (its next
// writes fail, so ingest notices and redials), its redials are refused
// while the fault holds, and a relay is taken again once it is cleared.
func TestSetLostHoldsTheStreamLost(t *testing.T) {
	o := New(Config{RTMPListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"}, nopRep{}, nil)
	addr, _, err := o.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	url := "rtmp://" + addr.String() + "/live/room1"
	dial := func() (*rtmp.Publisher, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return rtmp.DialPublish(ctx, url)
	}
	waitLive := func(want bool) {
		t.Helper()
		for i := 0; i < 100 && slices.Contains(o.Streams(), "room1") != want; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if slices.Contains(o.Streams(), "room1") != want {
			t.Fatalf("room1 live = %v, want %v (streams %v)", !want, want, o.Streams())
		}
	}
	p, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tag := flv.Tag{Type: flv.TagAudio, Data: []byte{0xaf, 0x01, 0, 0}}
	if err := p.WriteTag(&tag); err != nil {
		t.Fatal(err)
	}
	waitLive(true)

	o.SetLost("room1", true)
	waitLive(false)
	cut := false
	for i := 0; i < 100 && !cut; i++ {
		cut = p.WriteTag(&tag) != nil
		time.Sleep(20 * time.Millisecond)
	}
	if !cut {
		t.Error("the lost stream's relay still takes writes")
	}
	if p2, err := dial(); err == nil {
		p2.Close()
		t.Error("a relay of the lost room was accepted while the fault holds")
	}

	o.SetLost("room1", false)
	p3, err := dial()
	if err != nil {
		t.Fatalf("relay after the fault cleared: %v", err)
	}
	defer p3.Close()
	waitLive(true)
}
