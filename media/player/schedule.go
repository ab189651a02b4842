package player

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/lastmile-qoe/lastmile/media/scheduler"
)

// maxScheduleBody bounds the scheduler's answer; a real one is a few KB.
const maxScheduleBody = 1 << 20

// fetchSchedule asks the scheduler where to play cfg.Room.
func fetchSchedule(ctx context.Context, cfg *Config) (*scheduler.StreamData, error) {
	u, err := url.Parse(cfg.SchedulerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("scheduler url %q: want http://HOST:PORT", cfg.SchedulerURL)
	}
	if !strings.HasSuffix(u.Path, "/v1/schedule") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/schedule"
	}
	q := url.Values{}
	for k, v := range map[string]string{
		"room": cfg.Room, "device_id": cfg.DeviceID, "region": cfg.Region,
		"isp": cfg.ISP, "app_version": cfg.AppVersion,
	} {
		if v != "" { // the scheduler refuses nothing empty, but sends nothing it need not
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()

	dialer := &net.Dialer{Resolver: cfg.Resolver}
	client := &http.Client{Transport: &http.Transport{
		Proxy:       nil, // stack hosts (*.lastmile.test) never go through a proxy
		DialContext: dialer.DialContext,
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("schedule request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxScheduleBody))
	if err != nil {
		return nil, fmt.Errorf("schedule: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("schedule: HTTP %d: %s", resp.StatusCode, e.Error)
		}
		return nil, fmt.Errorf("schedule: HTTP %d", resp.StatusCode)
	}
	var sd scheduler.StreamData
	if err := json.Unmarshal(body, &sd); err != nil {
		return nil, fmt.Errorf("schedule: bad answer: %w", err)
	}
	return &sd, nil
}

// pickRendition returns the wanted rendition: name, else "source", else the
// first.
func pickRendition(sd *scheduler.StreamData, name string) (*scheduler.RenditionLines, error) {
	if len(sd.Renditions) == 0 {
		return nil, fmt.Errorf("schedule: no renditions offered for room %q", sd.Room)
	}
	want := name
	if want == "" {
		want = scheduler.SourceRendition
	}
	var names []string
	for i := range sd.Renditions {
		if sd.Renditions[i].Name == want {
			return &sd.Renditions[i], nil
		}
		names = append(names, sd.Renditions[i].Name)
	}
	if name == "" {
		return &sd.Renditions[0], nil
	}
	return nil, fmt.Errorf("schedule: rendition %q not offered (have %s)", name, strings.Join(names, ", "))
}
