package player

import (
	"math"
	"time"

	"github.com/lastmile-qoe/lastmile/media/report"
)

// emit sends one event with the common fields.
func (s *session) emit(logType string, ts time.Time, fields report.Event) {
	ev := report.Event{
		"log_type": logType, "ts": ts.UnixMilli(), "source": "client",
		"app_id": s.cfg.AppID, "device_id": s.cfg.DeviceID, "user_id": s.cfg.UserID,
		"session_id": s.cfg.SessionID, "room_id": s.cfg.Room,
		"region": s.cfg.Region, "isp": s.cfg.ISP, "app_version": s.cfg.AppVersion,
		"os": s.cfg.OS, "network": s.cfg.Network, "protocol": s.protocol,
		"codec": s.codec, "stream_id": "", "rendition": "", "cdn": "", "node_id": "",
	}
	if s.sd != nil {
		ev["stream_id"] = s.sd.StreamID
	}
	if s.rend != nil {
		ev["rendition"] = s.rend.Name
	}
	if s.att != nil {
		ev["cdn"], ev["node_id"] = s.att.l.CDN, s.att.l.Node
	}
	for k, v := range fields {
		ev[k] = v
	}
	s.cfg.Reporter.Log(ev)
}

func round1(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*10) / 10
}

func truncate(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	cut := maxReasonLen - 3
	for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}
