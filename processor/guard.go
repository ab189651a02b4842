package processor

import (
	"fmt"
	"runtime/debug"

	"github.com/go-kit/log/level"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// maxPanicText bounds the panic text kept in a dead-letter record and a log
// line: a panic message can quote the message's bytes.
const maxPanicText = 1 << 10

// addGuarded is add behind a recover: a panic while handling one message
// (a bug that some input reaches) must not take the role down, since every
// restart would read the same uncommitted message and die again. The message
// goes to the dead-letter topic with reason internal_error and the panic
// text, is counted and logged, and consumption goes on.
func (w *fetcher) addGuarded(msg kafka.Message) {
	defer func() {
		if r := recover(); r != nil {
			w.poisoned(msg, r)
		}
	}()
	w.add(msg)
}

// poisoned handles a message whose handling panicked with r.
func (w *fetcher) poisoned(msg kafka.Message, r any) {
	text := fmt.Sprint(r)
	if len(text) > maxPanicText {
		text = text[:maxPanicText] + "…"
	}
	stack := debug.Stack()
	if len(stack) > 8<<10 {
		stack = stack[:8<<10]
	}
	// A half-appended row would shift every later row of the batch: the
	// builders check their inputs before appending, so this means a bug in
	// them, and the only safe way on is a restart without committing.
	if err := w.consistent(); err != nil {
		panic(fmt.Sprintf("processor: %v after a panic handling %s/%d@%d: %s", err, msg.Topic, msg.Partition, msg.Offset, text))
	}
	tm := w.p.metrics.forTopic(msg.Topic)
	tm.panics.Inc()
	level.Error(w.logger).Log("msg", "handling a message panicked; it is dead-lettered (internal_error) and consumption goes on",
		"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "panic", text, "stack", string(stack))
	if msg.Topic == schemas.RejectedTopic {
		// Dead-lettering a dead-letter record could loop; it stays in the
		// topic, and the log line and counter say where.
		return
	}
	defer func() {
		if r := recover(); r != nil {
			level.Error(w.logger).Log("msg", "dead-lettering a message that panicked panicked too; it is skipped",
				"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "panic", fmt.Sprint(r))
		}
	}()
	// w.fields may be another message's: parse again for the ids.
	w.fields, _ = flatjson.ParseObject(w.fields, msg.Value)
	w.reject(tm, msg, &schemas.Reject{Code: schemas.ReasonInternalError,
		Msg: "the processor panicked handling this event (a bug; please report it): " + text})
}

// consistent checks that the batch's builders hold whole rows only.
func (w *fetcher) consistent() error {
	if err := w.rows.consistent(); err != nil {
		return err
	}
	if err := w.sessions.consistent(); err != nil {
		return err
	}
	return w.rej.consistent()
}
