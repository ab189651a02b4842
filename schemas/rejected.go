package schemas

import "github.com/lastmile-qoe/lastmile/internal/flatjson"

// RejectedRecord is one row of the rejected table, as produced to the
// rejected (dead-letter) topic by the collector or the processor.
type RejectedRecord struct {
	ReceivedAt int64  `json:"received_at"`
	AppID      string `json:"app_id"`
	LogType    string `json:"log_type,omitempty"`
	DeviceID   string `json:"device_id,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	// Stage is "collector" or "processor".
	Stage  string `json:"stage"`
	Code   string `json:"code"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
	// Raw is the event as sent, truncated to a bound.
	Raw string `json:"raw"`
	// EventIndex is the event's position in its request; -1 for a request
	// that could not be split into events.
	EventIndex int    `json:"event_index"`
	RequestID  string `json:"request_id,omitempty"`
	EventID    string `json:"event_id"`
}

// FillIDs copies the ids of a refused event, as far as they parse, so that
// its sender can find it by device, user or session.
func (r *RejectedRecord) FillIDs(fields []flatjson.Field) {
	for i := range fields {
		f := &fields[i]
		if f.Kind != flatjson.String {
			continue
		}
		switch {
		case f.KeyIs("app_id") && r.AppID == "":
			r.AppID = f.Str()
		case f.KeyIs("device_id"):
			r.DeviceID = f.Str()
		case f.KeyIs("user_id"):
			r.UserID = f.Str()
		case f.KeyIs("session_id"):
			r.SessionID = f.Str()
		case f.KeyIs("log_type") && r.LogType == "":
			r.LogType = f.Str()
		}
	}
}
