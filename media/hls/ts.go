package hls

import (
	"bytes"
	"context"
	"fmt"

	"github.com/asticode/go-astits"
)

// Elementary stream PIDs. Fixed values make segments from one packager
// (and from different renditions) look alike to a demuxer.
const (
	videoPID uint16 = 0x100
	audioPID uint16 = 0x101
)

// 33-bit PTS/DTS/PCR base in 90 kHz ticks; values wrap like the real clock.
const tsClockMask = 1<<33 - 1

// tsWriter wraps one astits.Muxer for the whole stream, so that the
// continuity counters run on across segment boundaries, and redirects its
// output to the current segment's buffer.
type tsWriter struct {
	mux    *astits.Muxer
	out    *bytes.Buffer
	pcrPID uint16
	af     astits.PacketAdaptationField
	pcr    astits.ClockReference
	pts    astits.ClockReference
	dts    astits.ClockReference
	opt    astits.PESOptionalHeader
	hdr    astits.PESHeader
	pes    astits.PESData
	data   astits.MuxerData
}

func (w *tsWriter) Write(b []byte) (int, error) { return w.out.Write(b) }

func newTSWriter(video, audio bool) (*tsWriter, error) {
	w := &tsWriter{out: new(bytes.Buffer)}
	// PAT and PMT go out at every keyframe (forced by astits for random
	// access points on the PCR PID); a large period keeps them from
	// being repeated in between.
	w.mux = astits.NewMuxer(context.Background(), w, astits.MuxerOptTablesRetransmitPeriod(1<<30))
	if video {
		if err := w.mux.AddElementaryStream(astits.PMTElementaryStream{ElementaryPID: videoPID, StreamType: astits.StreamTypeH264Video}); err != nil {
			return nil, fmt.Errorf("add video stream: %w", err)
		}
		w.pcrPID = videoPID
	}
	if audio {
		if err := w.mux.AddElementaryStream(astits.PMTElementaryStream{ElementaryPID: audioPID, StreamType: astits.StreamTypeAACAudio}); err != nil {
			return nil, fmt.Errorf("add audio stream: %w", err)
		}
		if !video {
			w.pcrPID = audioPID
		}
	}
	w.mux.SetPCRPID(w.pcrPID)
	return w, nil
}

// writePES muxes one PES packet. Times are in 90 kHz ticks. The PCR is
// sent with every PES on the PCR PID (well within the 100 ms the standard
// asks for at our frame rates) and set to the DTS. randomAccess marks a
// point a decoder can start at; on the PCR PID it also makes astits emit
// PAT and PMT first, which is what starts each segment.
func (w *tsWriter) writePES(pid uint16, pts, dts int64, randomAccess bool, payload []byte) error {
	w.pts.Base = pts & tsClockMask
	w.dts.Base = dts & tsClockMask
	w.opt = astits.PESOptionalHeader{
		MarkerBits:             2,
		DataAlignmentIndicator: true,
		PTSDTSIndicator:        astits.PTSDTSIndicatorOnlyPTS,
		PTS:                    &w.pts,
	}
	if pts != dts {
		w.opt.PTSDTSIndicator = astits.PTSDTSIndicatorBothPresent
		w.opt.DTS = &w.dts
	}
	w.hdr = astits.PESHeader{OptionalHeader: &w.opt}
	w.pes = astits.PESData{Header: &w.hdr, Data: payload}
	w.data = astits.MuxerData{PID: pid, PES: &w.pes}
	if pid == w.pcrPID || randomAccess {
		w.af = astits.PacketAdaptationField{RandomAccessIndicator: randomAccess}
		if pid == w.pcrPID {
			w.pcr.Base = dts & tsClockMask
			w.af.HasPCR = true
			w.af.PCR = &w.pcr
		}
		w.data.AdaptationField = &w.af
	}
	if _, err := w.mux.WriteData(&w.data); err != nil {
		return fmt.Errorf("mux PES on PID %#x: %w", pid, err)
	}
	return nil
}
