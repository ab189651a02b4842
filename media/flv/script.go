package flv

// Script tags start with an AMF0 string naming the handler. Only the name is
// looked at here; decoding the values is media/amf0's job.

const amf0String = 0x02

// ScriptName returns the leading AMF0 string of a script tag body ("" if it
// has none). For "@setDataFrame", which RTMP publishers put in front of
// onMetaData, it returns the name after it.
func ScriptName(data []byte) string {
	name, rest := amfString(data)
	if name == "@setDataFrame" {
		name, _ = amfString(rest)
	}
	return name
}

// IsMetadata reports a script tag carrying onMetaData (with or without the
// "@setDataFrame" prefix).
func (t *Tag) IsMetadata() bool {
	return t.Type == TagScript && ScriptName(t.Data) == "onMetaData"
}

// StripSetDataFrame returns a script body without a leading "@setDataFrame"
// string: what an RTMP publisher sends as data becomes what an FLV file
// holds. Other bodies are returned as they are.
func StripSetDataFrame(data []byte) []byte {
	if name, rest := amfString(data); name == "@setDataFrame" {
		return rest
	}
	return data
}

func amfString(b []byte) (string, []byte) {
	if len(b) < 3 || b[0] != amf0String {
		return "", b
	}
	n := int(b[1])<<8 | int(b[2])
	if len(b)-3 < n {
		return "", b
	}
	return string(b[3 : 3+n]), b[3+n:]
}
