// Package mediatest holds helpers for the media packages' tests.
package mediatest

import (
	"context"
	"testing"

	"github.com/lastmile-qoe/lastmile/media/rtmp"
	"github.com/lastmile-qoe/lastmile/media/sample"
)

// Publish pushes the embedded sample (25 fps, a keyframe every second) in
// real time to rtmpURL until ctx ends or a write fails; the returned
// channel gets why the push ended.
func Publish(ctx context.Context, t testing.TB, rtmpURL string) <-chan error {
	t.Helper()
	src, err := sample.New(sample.Options{Realtime: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtmp.DialPublish(ctx, rtmpURL)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		defer pub.Close()
		for {
			tag, err := src.Next(ctx)
			if err == nil {
				err = pub.WriteTag(&tag)
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

// PushSample publishes the sample to rtmpURL until the test ends. Register
// the server's own cleanup before calling it, so the push stops first.
func PushSample(t testing.TB, rtmpURL string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := Publish(ctx, t, rtmpURL)
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
