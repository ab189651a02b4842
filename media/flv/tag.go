// Package flv reads and writes FLV: the file header, tags and the
// PreviousTagSize trailers, and knows the few bits of the audio and video tag
// headers a live stack needs (keyframes, sequence headers, codecs).
//
// A Tag is also the unit every media/ component passes around: RTMP audio,
// video and data messages are FLV tag bodies, so ingest, origin, edge and
// player share one type.
package flv

// Tag types (the FLV TagType field, equal to the RTMP message type ids).
const (
	TagAudio  uint8 = 8
	TagVideo  uint8 = 9
	TagScript uint8 = 18
)

// Tag is one FLV tag: its type, its timestamp in milliseconds and its body
// (the AudioTagHeader/VideoTagHeader and payload, or AMF0 script data).
// Data is owned by whoever holds the Tag; components that keep a tag past
// the call that handed it over copy Data first.
type Tag struct {
	Type uint8
	Time uint32 // ms
	Data []byte
}

// IsVideo, IsAudio and IsScript report the tag type.
func (t *Tag) IsVideo() bool  { return t.Type == TagVideo }
func (t *Tag) IsAudio() bool  { return t.Type == TagAudio }
func (t *Tag) IsScript() bool { return t.Type == TagScript }

// IsKeyframe reports a video tag whose frame type is 1 (a keyframe), the
// point a player can start decoding from. AVC/HEVC sequence headers are
// keyframes too by this field; use IsSequenceHeader to tell them apart.
func (t *Tag) IsKeyframe() bool {
	return t.Type == TagVideo && len(t.Data) > 0 && t.Data[0]>>4 == 1
}

// IsSequenceHeader reports the decoder configuration of a stream: an AVC
// (or HEVC) sequence header (AVCPacketType 0) or an AAC sequence header
// (AACPacketType 0). A viewer needs these before any frame.
func (t *Tag) IsSequenceHeader() bool {
	switch t.Type {
	case TagVideo:
		if len(t.Data) < 2 {
			return false
		}
		codec := t.Data[0] & 0x0f
		return (codec == CodecAVC || codec == CodecHEVC) && t.Data[1] == 0
	case TagAudio:
		return len(t.Data) > 1 && t.Data[0]>>4 == SoundAAC && t.Data[1] == 0
	}
	return false
}

// Video codec ids (low nibble of the first video byte) and the AAC sound
// format (high nibble of the first audio byte).
const (
	CodecAVC  uint8 = 7
	CodecHEVC uint8 = 12
	SoundAAC  uint8 = 10
)

// Clone returns a copy of t with a Data of its own, for keeping a tag past
// the call that handed it over.
func (t *Tag) Clone() Tag {
	c := *t
	if t.Data != nil {
		c.Data = append(make([]byte, 0, len(t.Data)), t.Data...)
	}
	return c
}
