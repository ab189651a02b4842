// Package rtmp implements the publishing half of RTMP as ffmpeg and OBS
// speak it: a Server that accepts publishers and hands their audio, video
// and metadata to a Sink as flv.Tags, and a Publisher client that pushes
// tags to any RTMP server (our ingest, origin relays, nginx-rtmp, SRS).
//
// Covered: the handshake (plain, and the digest form Flash-era clients
// use), the chunk stream (formats 0-3, extended timestamps, any chunk
// size, interleaved chunk streams, Abort), Window Acknowledgement Size and
// Acknowledgement, Set Peer Bandwidth, ping, and the AMF0 commands of a
// publish (connect, releaseStream, FCPublish, createStream, publish,
// FCUnpublish, deleteStream). Not covered: playing, RTMPE/RTMPS, AMF3
// values, shared objects.
//
// Media path buffers are reused: a Sink's tag data is valid only during
// WriteTag.
package rtmp
